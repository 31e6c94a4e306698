package manifest

import (
	"encoding/binary"
	"fmt"
	"io/fs"
	"math"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// The binary form of a manifest, format version 1. Integers are uvarints
// (encoding/binary) in their shortest form; strings are a uvarint length and
// the bytes.
//
//	magic      "DVFSMAN" and the format version byte 1
//	kind       uvarint
//	name       string
//	version    uvarint
//	parent     uvarint
//	created    time
//	block size uvarint
//	count      uvarint, the number of files
//	files      count times:
//	  path     string
//	  mode     uvarint: type<<12 | the Unix permission bits (07777), with
//	           type 0 regular file, 1 directory, 2 symlink
//	  size     uvarint
//	  mtime    time
//	  target   string, for a symlink only
//	  blocks   for a regular file only: runs that cover exactly its
//	           ceil(size/block size) blocks. A run is a uvarint n<<1|h,
//	           n >= 1: h=1 is n holes and nothing more, h=0 is n non-hole
//	           IDs of 32 bytes each. Runs are maximal: they alternate
//	           between holes and IDs.
//
// A time is a uvarint: 0 for the zero time.Time, else the zigzag form of its
// Unix nanoseconds plus one.
//
// Every manifest has exactly one encoding: Unmarshal rejects what
// MarshalBinary would not write (non-shortest uvarints, empty or adjacent
// runs of one kind, a hole in an ID run, trailing bytes), so equal manifests
// have equal bytes and equal signatures.
const (
	magic         = "DVFSMAN"
	formatVersion = 1
)

// Mode types in the encoding.
const (
	typeRegular = 0
	typeDir     = 1
	typeSymlink = 2
)

// minFileLen is the fewest bytes an encoded file takes (path length, one
// path byte, mode, size, mtime), which bounds the count a decoder believes.
const minFileLen = 5

// MarshalBinary encodes m in the binary form above, after checking it with
// Validate. The same manifest always gives the same bytes. Times keep their
// instant only: location and monotonic reading are dropped.
func (m *Manifest) MarshalBinary() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	b := make([]byte, 0, m.encodedSizeBound())
	b = append(b, magic...)
	b = append(b, formatVersion)
	b = binary.AppendUvarint(b, uint64(m.Kind))
	b = appendString(b, m.Name)
	b = binary.AppendUvarint(b, m.Version)
	b = binary.AppendUvarint(b, m.Parent)
	b = appendTime(b, m.Created)
	b = binary.AppendUvarint(b, uint64(m.BlockSize))
	b = binary.AppendUvarint(b, uint64(len(m.Files)))
	for i := range m.Files {
		f := &m.Files[i]
		b = appendString(b, f.Path)
		b = binary.AppendUvarint(b, encodeMode(f.Mode))
		b = binary.AppendUvarint(b, uint64(f.Size))
		b = appendTime(b, f.MTime)
		switch f.Mode.Type() {
		case fs.ModeSymlink:
			b = appendString(b, f.Target)
		case 0:
			b = appendBlocks(b, f.Blocks)
		}
	}
	return b, nil
}

// encodedSizeBound returns at least the length of m's encoding, and not
// much more: holes count for nothing but their runs.
func (m *Manifest) encodedSizeBound() int {
	const v = binary.MaxVarintLen64
	n := len(magic) + 1 + 7*v + len(m.Name)
	for i := range m.Files {
		f := &m.Files[i]
		n += 5*v + len(f.Path) + len(f.Target)
		for _, id := range f.Blocks {
			if id.IsHole() {
				n++ // at most one run header per hole
			} else {
				n += blockstore.IDSize + 1
			}
		}
	}
	return n
}

func appendString(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

func appendTime(b []byte, t time.Time) []byte {
	if t.IsZero() {
		return append(b, 0)
	}
	ns := t.UnixNano()
	return binary.AppendUvarint(b, (uint64(ns<<1)^uint64(ns>>63))+1)
}

func appendBlocks(b []byte, ids []blockstore.ID) []byte {
	for i := 0; i < len(ids); {
		hole := ids[i].IsHole()
		j := i + 1
		for j < len(ids) && ids[j].IsHole() == hole {
			j++
		}
		if hole {
			b = binary.AppendUvarint(b, uint64(j-i)<<1|1)
		} else {
			b = binary.AppendUvarint(b, uint64(j-i)<<1)
			for _, id := range ids[i:j] {
				b = append(b, id[:]...)
			}
		}
		i = j
	}
	return b
}

func encodeMode(m fs.FileMode) uint64 {
	u := uint64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	switch m.Type() {
	case fs.ModeDir:
		u |= typeDir << 12
	case fs.ModeSymlink:
		u |= typeSymlink << 12
	}
	return u
}

func decodeMode(u uint64) (fs.FileMode, bool) {
	m := fs.FileMode(u & 0o777)
	if u&0o4000 != 0 {
		m |= fs.ModeSetuid
	}
	if u&0o2000 != 0 {
		m |= fs.ModeSetgid
	}
	if u&0o1000 != 0 {
		m |= fs.ModeSticky
	}
	switch u >> 12 {
	case typeRegular:
	case typeDir:
		m |= fs.ModeDir
	case typeSymlink:
		m |= fs.ModeSymlink
	default:
		return 0, false
	}
	return m, true
}

// UnmarshalBinary decodes data into m, as Unmarshal does.
func (m *Manifest) UnmarshalBinary(data []byte) error {
	d, err := Unmarshal(data)
	if err != nil {
		return err
	}
	*m = *d
	return nil
}

// Unmarshal decodes a manifest written by MarshalBinary. It trusts nothing
// in data: counts and lengths are checked against the limits and against the
// bytes that remain before anything is allocated for them, and the result
// passes Validate. Errors wrap ErrMalformed and say what was being read and
// at which byte offset. Times come back in UTC. The result shares no memory
// with data.
func Unmarshal(data []byte) (*Manifest, error) {
	d := decoder{data: data}
	m, err := d.manifest()
	if err != nil {
		return nil, err
	}
	if err := m.validate(); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return m, nil
}

// decoder reads data from off. For errors, it keeps which field it is
// reading (what, of file, or of the header when file is -1) and at which
// byte offset that field starts.
type decoder struct {
	data  []byte
	off   int
	what  string
	file  int
	start int
}

// field starts reading the field what at the current offset.
func (d *decoder) field(what string) {
	d.what, d.start = what, d.off
}

func (d *decoder) errorf(format string, args ...any) error {
	where := d.what
	if d.file >= 0 {
		where = fmt.Sprintf("file %d %s", d.file, d.what)
	}
	return fmt.Errorf("%w: %s (byte %d): %s", ErrMalformed, where, d.start, fmt.Sprintf(format, args...))
}

func (d *decoder) remaining() int { return len(d.data) - d.off }

func (d *decoder) uvarint() (uint64, error) {
	v, n := binary.Uvarint(d.data[d.off:])
	switch {
	case n == 0:
		return 0, d.errorf("truncated")
	case n < 0:
		return 0, d.errorf("varint overflows 64 bits")
	case n > 1 && d.data[d.off+n-1] == 0:
		return 0, d.errorf("varint not in its shortest form")
	}
	d.off += n
	return v, nil
}

// uvarintMax reads a uvarint of at most max.
func (d *decoder) uvarintMax(max uint64) (uint64, error) {
	v, err := d.uvarint()
	if err == nil && v > max {
		return 0, d.errorf("%d is more than %d", v, max)
	}
	return v, err
}

// string reads a string of at most max bytes.
func (d *decoder) string(max int) (string, error) {
	n, err := d.uvarintMax(uint64(max))
	if err != nil {
		return "", err
	}
	if n > uint64(d.remaining()) {
		return "", d.errorf("truncated: length %d, %d bytes left", n, d.remaining())
	}
	s := string(d.data[d.off : d.off+int(n)])
	d.off += int(n)
	return s, nil
}

func (d *decoder) time() (time.Time, error) {
	u, err := d.uvarint()
	if err != nil || u == 0 {
		return time.Time{}, err
	}
	u--
	return time.Unix(0, int64(u>>1)^-int64(u&1)).UTC(), nil
}

func (d *decoder) manifest() (*Manifest, error) {
	d.file = -1
	d.field("magic")
	if len(d.data) < len(magic)+1 {
		return nil, d.errorf("truncated: %d bytes, a manifest has at least %d", len(d.data), len(magic)+1)
	}
	if string(d.data[:len(magic)]) != magic {
		return nil, d.errorf("not a dvfs manifest")
	}
	if v := d.data[len(magic)]; v != formatVersion {
		return nil, d.errorf("format version %d, this dvfs reads version %d", v, formatVersion)
	}
	d.off = len(magic) + 1

	m := new(Manifest)
	d.field("kind")
	kind, err := d.uvarintMax(math.MaxUint8)
	if err != nil {
		return nil, err
	}
	m.Kind = Kind(kind)
	d.field("name")
	if m.Name, err = d.string(MaxNameLen); err != nil {
		return nil, err
	}
	d.field("version")
	if m.Version, err = d.uvarint(); err != nil {
		return nil, err
	}
	d.field("parent")
	if m.Parent, err = d.uvarint(); err != nil {
		return nil, err
	}
	d.field("created")
	if m.Created, err = d.time(); err != nil {
		return nil, err
	}
	d.field("block size")
	bs, err := d.uvarintMax(blockstore.MaxBlockSize)
	if err != nil {
		return nil, err
	}
	m.BlockSize = uint32(bs)
	if err := validBlockSize(m.BlockSize); err != nil {
		return nil, d.errorf("%v", err)
	}
	d.field("file count")
	n, err := d.uvarintMax(MaxFiles)
	if err != nil {
		return nil, err
	}
	if n > uint64(d.remaining()/minFileLen) {
		return nil, d.errorf("truncated: %d files cannot fit in %d bytes", n, d.remaining())
	}
	if n > 0 {
		m.Files = make([]File, n)
	}
	blocks := 0 // block IDs decoded so far, against MaxBlocks
	for i := range m.Files {
		d.file = i
		if err := d.entry(m, &m.Files[i], &blocks); err != nil {
			return nil, err
		}
	}
	d.file = -1
	d.field("end")
	if d.remaining() > 0 {
		return nil, d.errorf("%d trailing bytes", d.remaining())
	}
	return m, nil
}

func (d *decoder) entry(m *Manifest, f *File, blocks *int) error {
	var err error
	d.field("path")
	if f.Path, err = d.string(MaxPathLen); err != nil {
		return err
	}
	d.field("mode")
	u, err := d.uvarint()
	if err != nil {
		return err
	}
	mode, ok := decodeMode(u)
	if !ok {
		return d.errorf("unknown mode %#o", u)
	}
	f.Mode = mode
	d.field("size")
	size, err := d.uvarintMax(math.MaxInt64)
	if err != nil {
		return err
	}
	f.Size = int64(size)
	d.field("mtime")
	if f.MTime, err = d.time(); err != nil {
		return err
	}
	switch mode.Type() {
	case fs.ModeSymlink:
		d.field("target")
		f.Target, err = d.string(MaxTargetLen)
		return err
	case 0:
		d.field("blocks")
		n := blockCount(f.Size, m.BlockSize)
		if n > uint64(MaxBlocks-*blocks) {
			return d.errorf("%d bytes need %d blocks, more than MaxBlocks (%d) in all", f.Size, n, MaxBlocks)
		}
		*blocks += int(n)
		f.Blocks, err = d.blocks(int(n))
		return err
	}
	return nil
}

// blocks reads the runs of n block IDs. Memory grows with the runs read:
// ID runs are backed by input bytes, hole runs by the MaxBlocks budget the
// caller checked.
func (d *decoder) blocks(n int) ([]blockstore.ID, error) {
	if n == 0 {
		return nil, nil
	}
	ids := make([]blockstore.ID, 0, min(n, d.remaining()/blockstore.IDSize+1))
	prevHole := -1
	for len(ids) < n {
		d.start = d.off
		u, err := d.uvarint()
		if err != nil {
			return nil, err
		}
		hole, k := int(u&1), u>>1
		switch {
		case k == 0:
			return nil, d.errorf("empty run")
		case k > uint64(n-len(ids)):
			return nil, d.errorf("run of %d blocks after %d overruns the file's %d", k, len(ids), n)
		case hole == prevHole:
			return nil, d.errorf("two runs of the same kind in a row")
		}
		prevHole = hole
		l := len(ids)
		if hole == 1 {
			ids = append(ids, make([]blockstore.ID, k)...)
			continue
		}
		if k > uint64(d.remaining()/blockstore.IDSize) {
			return nil, d.errorf("truncated: run of %d IDs, %d bytes left", k, d.remaining())
		}
		ids = append(ids, make([]blockstore.ID, k)...)
		for i := l; i < len(ids); i++ {
			copy(ids[i][:], d.data[d.off:])
			if ids[i].IsHole() {
				d.start = d.off
				return nil, d.errorf("hole in a run of IDs")
			}
			d.off += blockstore.IDSize
		}
	}
	return ids, nil
}
