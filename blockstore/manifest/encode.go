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
// Format version 2 adds owners, access times, named pipes, sockets, device
// nodes and hard links. It is format 1 with these changes:
//
//	magic      "DVFSMAN" and the format version byte 2
//	...        kind to block size as in format 1
//	flags      uvarint: bit 0 is Owners; the other bits are 0
//	count      uvarint, the number of files
//	files      count times:
//	  path     string
//	  mode     uvarint: type<<12 | the Unix permission bits (07777), with
//	           type 0 regular file, 1 directory, 2 symlink, 3 named pipe,
//	           4 socket, 5 character device, 6 block device, 7 hard link;
//	           a hard link has no permission bits (its mode is 7<<12)
//	  link     string, for a hard link only, and nothing more follows for
//	           it: the path of the earlier entry it is another name of,
//	           whose fields it shares
//	  size     uvarint
//	  mtime    time
//	  atime    time
//	  uid      uvarint, when Owners is set
//	  gid      uvarint, when Owners is set
//	  rdev     uvarint, for a character or block device only
//	  target   string, for a symlink only
//	  blocks   for a regular file only, as in format 1
//
// MarshalBinary writes format 1 unless the manifest needs format 2: Owners
// is set, or an entry has an ATime, a type format 1 lacks, or a Link.
//
// Every manifest has exactly one encoding: Unmarshal rejects what
// MarshalBinary would not write (non-shortest uvarints, empty or adjacent
// runs of one kind, a hole in an ID run, trailing bytes, unknown flags,
// permission bits on a hard link, format 2 for a manifest format 1 holds),
// so equal manifests have equal bytes and equal signatures.
const (
	magic    = "DVFSMAN"
	formatV1 = 1
	formatV2 = 2
)

// Flag bits of format 2.
const flagOwners = 1 << 0

// Mode types in the encoding. Format 1 has the first three only.
const (
	typeRegular     = 0
	typeDir         = 1
	typeSymlink     = 2
	typeNamedPipe   = 3
	typeSocket      = 4
	typeCharDevice  = 5
	typeBlockDevice = 6
	typeLink        = 7
)

// minFileLen is the fewest bytes an encoded file takes (path length, one
// path byte, mode, size, mtime; or path length, one path byte, mode, link
// length, one link byte), which bounds the count a decoder believes.
const minFileLen = 5

// MarshalBinary encodes m in the binary form above, after checking it with
// Validate: in format 1 when that holds it, else in format 2. The same
// manifest always gives the same bytes. Times keep their instant only:
// location and monotonic reading are dropped.
func (m *Manifest) MarshalBinary() ([]byte, error) {
	if err := m.Validate(); err != nil {
		return nil, err
	}
	format := m.format()
	b := make([]byte, 0, m.encodedSizeBound())
	b = append(b, magic...)
	b = append(b, format)
	b = binary.AppendUvarint(b, uint64(m.Kind))
	b = appendString(b, m.Name)
	b = binary.AppendUvarint(b, m.Version)
	b = binary.AppendUvarint(b, m.Parent)
	b = appendTime(b, m.Created)
	b = binary.AppendUvarint(b, uint64(m.BlockSize))
	if format == formatV2 {
		var flags uint64
		if m.Owners {
			flags |= flagOwners
		}
		b = binary.AppendUvarint(b, flags)
	}
	b = binary.AppendUvarint(b, uint64(len(m.Files)))
	for i := range m.Files {
		f := &m.Files[i]
		b = appendString(b, f.Path)
		if f.Link != "" {
			b = binary.AppendUvarint(b, typeLink<<12)
			b = appendString(b, f.Link)
			continue
		}
		b = binary.AppendUvarint(b, encodeMode(f.Mode))
		b = binary.AppendUvarint(b, uint64(f.Size))
		b = appendTime(b, f.MTime)
		if format == formatV2 {
			b = appendTime(b, f.ATime)
			if m.Owners {
				b = binary.AppendUvarint(b, uint64(f.UID))
				b = binary.AppendUvarint(b, uint64(f.GID))
			}
			if f.Mode&fs.ModeDevice != 0 {
				b = binary.AppendUvarint(b, f.Rdev)
			}
		}
		switch f.Mode.Type() {
		case fs.ModeSymlink:
			b = appendString(b, f.Target)
		case 0:
			b = appendBlocks(b, f.Blocks)
		}
	}
	return b, nil
}

// format returns the format version m is written in: 1 unless m has owners,
// access times, special files or hard links. (Only devices have an Rdev, so
// it needs no test of its own.) m must be valid.
func (m *Manifest) format() byte {
	if m.Owners {
		return formatV2
	}
	for i := range m.Files {
		f := &m.Files[i]
		if !f.ATime.IsZero() || f.Link != "" || isSpecial(f.Mode) {
			return formatV2
		}
	}
	return formatV1
}

// encodedSizeBound returns at least the length of m's encoding, and not
// much more: holes count for nothing but their runs, hard links for their
// paths only.
func (m *Manifest) encodedSizeBound() int {
	const v = binary.MaxVarintLen64
	n := len(magic) + 1 + 8*v + len(m.Name)
	for i := range m.Files {
		f := &m.Files[i]
		if f.Link != "" {
			n += 3*v + len(f.Path) + len(f.Link)
			continue
		}
		n += 9*v + len(f.Path) + len(f.Target)
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

// encodeMode returns the mode field of an entry that is not a hard link.
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
	var typ uint64
	switch m.Type() {
	case fs.ModeDir:
		typ = typeDir
	case fs.ModeSymlink:
		typ = typeSymlink
	case fs.ModeNamedPipe:
		typ = typeNamedPipe
	case fs.ModeSocket:
		typ = typeSocket
	case fs.ModeDevice | fs.ModeCharDevice:
		typ = typeCharDevice
	case fs.ModeDevice:
		typ = typeBlockDevice
	}
	return u | typ<<12
}

// decodeMode returns the fs.FileMode of the mode field u, which is not a
// hard link's, and false when the type is not one of format version
// format.
func decodeMode(u uint64, format byte) (fs.FileMode, bool) {
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
	typ := u >> 12
	if format == formatV1 && typ > typeSymlink {
		return 0, false
	}
	switch typ {
	case typeRegular:
	case typeDir:
		m |= fs.ModeDir
	case typeSymlink:
		m |= fs.ModeSymlink
	case typeNamedPipe:
		m |= fs.ModeNamedPipe
	case typeSocket:
		m |= fs.ModeSocket
	case typeCharDevice:
		m |= fs.ModeDevice | fs.ModeCharDevice
	case typeBlockDevice:
		m |= fs.ModeDevice
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

// Unmarshal decodes a manifest written by MarshalBinary, in format 1 or 2.
// It trusts nothing in data: counts and lengths are checked against the
// limits and against the bytes that remain before anything is allocated for
// them, and the result passes Validate. Errors wrap ErrMalformed and say
// what was being read and at which byte offset. Times come back in UTC. The
// result shares no memory with data; a hard link's Blocks shares the slice
// of the entry it names.
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
	data   []byte
	format byte // the format version, once read
	off    int
	what   string
	file   int
	start  int
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
	d.format = d.data[len(magic)]
	if d.format != formatV1 && d.format != formatV2 {
		return nil, d.errorf("format version %d, this dvfs reads versions %d and %d", d.format, formatV1, formatV2)
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
	if d.format == formatV2 {
		d.field("flags")
		flags, err := d.uvarint()
		if err != nil {
			return nil, err
		}
		if flags&^flagOwners != 0 {
			return nil, d.errorf("unknown flags %#x", flags&^flagOwners)
		}
		m.Owners = flags&flagOwners != 0
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
		if err := d.entry(m, i, &blocks); err != nil {
			return nil, err
		}
	}
	d.file = -1
	d.field("end")
	if d.remaining() > 0 {
		return nil, d.errorf("%d trailing bytes", d.remaining())
	}
	if d.format != m.format() {
		d.what, d.start = "format version", len(magic)
		return nil, d.errorf("format %d for a manifest that format 1 holds (nothing in it needs format 2)", d.format)
	}
	return m, nil
}

// entry decodes file i of m. blocks counts the block IDs decoded so far,
// against MaxBlocks.
func (d *decoder) entry(m *Manifest, i int, blocks *int) error {
	f := &m.Files[i]
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
	if d.format == formatV2 && u>>12 == typeLink {
		if u != typeLink<<12 {
			return d.errorf("hard link with permission bits %#o", u&0o7777)
		}
		return d.link(m.Files[:i], f)
	}
	mode, ok := decodeMode(u, d.format)
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
	if d.format == formatV2 {
		if err := d.entryV2(m, f); err != nil {
			return err
		}
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

// entryV2 decodes the fields format 2 adds after an entry's mtime: atime,
// owner and device number.
func (d *decoder) entryV2(m *Manifest, f *File) error {
	var err error
	d.field("atime")
	if f.ATime, err = d.time(); err != nil {
		return err
	}
	if m.Owners {
		d.field("uid")
		uid, err := d.uvarintMax(math.MaxUint32)
		if err != nil {
			return err
		}
		d.field("gid")
		gid, err := d.uvarintMax(math.MaxUint32)
		if err != nil {
			return err
		}
		f.UID, f.GID = uint32(uid), uint32(gid)
	}
	if f.Mode&fs.ModeDevice != 0 {
		d.field("rdev")
		if f.Rdev, err = d.uvarint(); err != nil {
			return err
		}
	}
	return nil
}

// link decodes the rest of the hard link f: the path of the entry it names,
// which must be in prev, the entries decoded before it. f takes that entry's
// fields, sharing its Blocks; Unmarshal's Validate checks the rest (that it
// is not a directory or a link).
func (d *decoder) link(prev []File, f *File) error {
	d.field("link")
	link, err := d.string(MaxPathLen)
	if err != nil {
		return err
	}
	t, ok := (&Manifest{Files: prev}).Lookup(link)
	if !ok {
		return d.errorf("%q is not listed before the link", link)
	}
	path := f.Path
	*f = *t
	f.Path, f.Link = path, link
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
