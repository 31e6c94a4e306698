package fs

import (
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"strconv"
	"time"
)

// An overlay's metadata lives in Config.Meta under "ovl/CLONE/":
//
//	ovl/CLONE/hdr              header: format version, the base generation,
//	                           block and sector size
//	ovl/CLONE/i/INO            inode record (INO: 16 hex digits; 1 is the root)
//	ovl/CLONE/d/PARENT/NAME    directory entry: the child's INO, 8 bytes big-endian
//	ovl/CLONE/b/INO/CHUNK      bitmap of a regular file's local sectors, chunkBits
//	                           sectors per chunk (CHUNK: 8 hex digits); absent = none
//
// Format 1 overlays (before sectors) kept bitmaps of blocks; load converts
// them to format 2 in one CommitMeta (a local block is all local sectors).
//
// A namespace change (create, mkdir, symlink, rename, unlink, rmdir) is one
// CommitMeta of the records and entries it touches. A regular file's record
// (size, base size, times, mode) and its bitmap chunks are committed together
// by a sync, after the data file has been synced. Nothing else writes them,
// so whatever Meta holds after a crash describes data that is on disk.
func (c *clone) hdrKey() string               { return c.prefix + "hdr" }
func (c *clone) inodeKey(ino uint64) string   { return c.prefix + "i/" + hex16(ino) }
func (c *clone) dentPrefix(dir uint64) string { return c.prefix + "d/" + hex16(dir) + "/" }
func (c *clone) dentKey(dir uint64, name string) string {
	return c.dentPrefix(dir) + name
}
func (c *clone) chunkKey(ino uint64, chunk int) string {
	return fmt.Sprintf("%sb/%016x/%08x", c.prefix, ino, chunk)
}

func hex16(v uint64) string { return fmt.Sprintf("%016x", v) }

func parseHex(s string, digits int) (uint64, bool) {
	if len(s) != digits {
		return 0, false
	}
	v, err := strconv.ParseUint(s, 16, 64)
	return v, err == nil
}

func inoValue(ino uint64) []byte { return binary.BigEndian.AppendUint64(nil, ino) }

// Encoded forms start with a tag and a format version.
const (
	tagRecord = 'i'
	tagHeader = 'h'
	formatV1  = 1
	// formatV2 is the header's format since bitmaps hold sectors.
	formatV2 = 2
)

// record is an inode as Meta keeps it. Format 1 records end after the
// base path; format 2 adds atime, owner (stored IDs) and rdev. A format 1
// record has no owner: it loads as Config.Owner's.
type record struct {
	mode     iofs.FileMode
	size     int64
	baseSize int64 // base data at or past this offset reads as zeros
	mtime    int64 // Unix nanoseconds
	ctime    int64
	target   string // symlinks
	basePath string // regular files copied from the base: their path there
	atime    int64  // format 2
	uid, gid uint32 // format 2: stored IDs
	rdev     uint64 // format 2: device nodes
	owned    bool   // decoded from format 2: uid and gid are meaningful
}

func (r *record) marshal() []byte {
	b := make([]byte, 0, 80+len(r.target)+len(r.basePath))
	b = append(b, tagRecord, formatV2)
	b = binary.AppendUvarint(b, uint64(r.mode))
	b = binary.AppendVarint(b, r.size)
	b = binary.AppendVarint(b, r.baseSize)
	b = binary.AppendVarint(b, r.mtime)
	b = binary.AppendVarint(b, r.ctime)
	b = binary.AppendUvarint(b, uint64(len(r.target)))
	b = append(b, r.target...)
	b = binary.AppendUvarint(b, uint64(len(r.basePath)))
	b = append(b, r.basePath...)
	b = binary.AppendVarint(b, r.atime)
	b = binary.AppendUvarint(b, uint64(r.uid))
	b = binary.AppendUvarint(b, uint64(r.gid))
	b = binary.AppendUvarint(b, r.rdev)
	return b
}

// maxRecordString bounds a record's target and base path (PATH_MAX).
const maxRecordString = 4096

var errShort = errors.New("truncated")

type decoder struct {
	b   []byte
	err error
}

func (d *decoder) uvarint() uint64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Uvarint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) varint() int64 {
	if d.err != nil {
		return 0
	}
	v, n := binary.Varint(d.b)
	if n <= 0 {
		d.err = errShort
		return 0
	}
	d.b = d.b[n:]
	return v
}

func (d *decoder) str() string {
	n := d.uvarint()
	if d.err != nil {
		return ""
	}
	if n > maxRecordString || n > uint64(len(d.b)) {
		d.err = fmt.Errorf("string of %d bytes", n)
		return ""
	}
	s := string(d.b[:n])
	d.b = d.b[n:]
	return s
}

// tag reads the tag and format of a record, which may be of formats 1 to
// max, and returns the format.
func (d *decoder) tag(tag byte, max byte) byte {
	if len(d.b) < 2 || d.b[0] != tag || d.b[1] < formatV1 || d.b[1] > max {
		d.err = fmt.Errorf("not a %q record of format %d to %d", tag, formatV1, max)
		return 0
	}
	f := d.b[1]
	d.b = d.b[2:]
	return f
}

func (d *decoder) finish() error {
	if d.err == nil && len(d.b) != 0 {
		d.err = fmt.Errorf("%d trailing bytes", len(d.b))
	}
	return d.err
}

// permMode is what a mode may hold besides its type.
const permMode = iofs.ModePerm | iofs.ModeSetuid | iofs.ModeSetgid | iofs.ModeSticky

// validType reports whether m's type bits are a type an entry may have.
func validType(m iofs.FileMode) bool {
	switch m.Type() {
	case 0, iofs.ModeDir, iofs.ModeSymlink, iofs.ModeNamedPipe, iofs.ModeSocket,
		iofs.ModeDevice, iofs.ModeDevice | iofs.ModeCharDevice:
		return true
	}
	return false
}

// isDevice reports whether m is a block or character device.
func isDevice(m iofs.FileMode) bool { return m&iofs.ModeDevice != 0 }

func unmarshalRecord(b []byte) (record, error) {
	d := decoder{b: b}
	format := d.tag(tagRecord, formatV2)
	var r record
	mode := d.uvarint()
	r.mode = iofs.FileMode(mode)
	r.size = d.varint()
	r.baseSize = d.varint()
	r.mtime = d.varint()
	r.ctime = d.varint()
	r.target = d.str()
	r.basePath = d.str()
	if format >= formatV2 {
		r.atime = d.varint()
		uid, gid := d.uvarint(), d.uvarint()
		r.rdev = d.uvarint()
		if uid > uint64(^uint32(0)) || gid > uint64(^uint32(0)) {
			return record{}, fmt.Errorf("%w: inode record: owner %d:%d", ErrCorrupt, uid, gid)
		}
		r.uid, r.gid, r.owned = uint32(uid), uint32(gid), true
	}
	if err := d.finish(); err != nil {
		return record{}, fmt.Errorf("%w: inode record: %v", ErrCorrupt, err)
	}
	switch {
	case mode > uint64(^uint32(0)) || r.mode&^(iofs.ModeType|permMode) != 0 || !validType(r.mode):
		return record{}, fmt.Errorf("%w: inode record: mode %v", ErrCorrupt, r.mode)
	case r.rdev != 0 && !isDevice(r.mode):
		return record{}, fmt.Errorf("%w: inode record: device number on a %v", ErrCorrupt, r.mode.Type())
	case r.size < 0 || r.size > MaxFileSize || r.baseSize < 0 || r.baseSize > r.size:
		return record{}, fmt.Errorf("%w: inode record: size %d, base size %d", ErrCorrupt, r.size, r.baseSize)
	case r.mode.Type() != iofs.ModeSymlink && r.target != "",
		r.mode.Type() == iofs.ModeSymlink && r.target == "":
		return record{}, fmt.Errorf("%w: inode record: mode %v with target %q", ErrCorrupt, r.mode, r.target)
	case r.mode.Type() != 0 && (r.basePath != "" || r.size != 0):
		return record{}, fmt.Errorf("%w: inode record: a %v with size or base", ErrCorrupt, r.mode.Type())
	}
	return r, nil
}

// header is an overlay's ovl/CLONE/hdr.
type header struct {
	format      byte   // formatV1: bitmaps of blocks; formatV2: of sectors
	baseVersion uint64 // the clone generation the overlay was made on
	blockSize   uint32
	sectorSize  uint32 // formatV2
}

// newHeader is the header of an overlay made now.
func newHeader(baseVersion uint64, blockSize uint32) header {
	return header{format: formatV2, baseVersion: baseVersion, blockSize: blockSize,
		sectorSize: uint32(sectorSize(int64(blockSize)))}
}

func (h *header) marshal() []byte {
	b := []byte{tagHeader, h.format}
	b = binary.AppendUvarint(b, h.baseVersion)
	b = binary.AppendUvarint(b, uint64(h.blockSize))
	if h.format >= formatV2 {
		b = binary.AppendUvarint(b, uint64(h.sectorSize))
	}
	return b
}

func unmarshalHeader(b []byte) (header, error) {
	if len(b) < 2 || b[0] != tagHeader || (b[1] != formatV1 && b[1] != formatV2) {
		return header{}, fmt.Errorf("%w: overlay header: not a header of format %d or %d", ErrCorrupt, formatV1, formatV2)
	}
	d := decoder{b: b[2:]}
	h := header{format: b[1], baseVersion: d.uvarint()}
	bs := d.uvarint()
	ss := bs
	if h.format >= formatV2 {
		ss = d.uvarint()
	}
	if err := d.finish(); err != nil {
		return header{}, fmt.Errorf("%w: overlay header: %v", ErrCorrupt, err)
	}
	if bs < 512 || bs > 64<<20 || bs&(bs-1) != 0 {
		return header{}, fmt.Errorf("%w: overlay header: block size %d", ErrCorrupt, bs)
	}
	h.blockSize = uint32(bs)
	if h.format >= formatV2 {
		if int64(ss) != sectorSize(int64(bs)) {
			return header{}, fmt.Errorf("%w: overlay header: sector size %d for blocks of %d", ErrCorrupt, ss, bs)
		}
		h.sectorSize = uint32(ss)
	}
	return h, nil
}

func nanos(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixNano()
}

func fromNanos(ns int64) time.Time {
	if ns == 0 {
		return time.Time{}
	}
	return time.Unix(0, ns)
}
