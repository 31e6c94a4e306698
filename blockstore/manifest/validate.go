package manifest

import (
	"errors"
	"fmt"
	"io/fs"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Limits. Validate enforces them and Unmarshal checks them before it
// allocates, so a hostile or damaged manifest cannot make a decoder allocate
// without bound.
const (
	// MaxFiles bounds the entries of one manifest. A VM template folder
	// holds tens; a million leaves room for a whole guest tree.
	MaxFiles = 1 << 20
	// MaxBlocks bounds the block IDs of one manifest, holes included: 1 TiB
	// of files at the default 64 KiB block size. A hole costs a few bits
	// encoded but 32 bytes decoded, so this also bounds what Unmarshal
	// allocates for IDs (512 MiB). A hard link's IDs are its file's and
	// are not counted again.
	MaxBlocks = 1 << 24
	// MaxPathLen bounds File.Path in bytes (Linux's PATH_MAX).
	MaxPathLen = 4096
	// MaxElemLen bounds one element of a path in bytes (NAME_MAX).
	MaxElemLen = 255
	// MaxTargetLen bounds a symlink's target in bytes.
	MaxTargetLen = 4096
	// MaxNameLen bounds a template name in bytes.
	MaxNameLen = 128
	// MinBlockSize is the smallest block size, one page.
	MinBlockSize = 4 << 10
)

// Sentinel errors, tested with errors.Is.
var (
	// ErrInvalid: a Manifest breaks a rule of Validate, or a name is not
	// a valid template name.
	ErrInvalid = errors.New("manifest: invalid")
	// ErrMalformed: bytes given to Unmarshal or Open are not a manifest or
	// envelope of this format: truncated, bad magic, unknown version,
	// trailing bytes, a count beyond the limits, or a decoded manifest
	// that Validate rejects.
	ErrMalformed = errors.New("manifest: malformed")
	// ErrBadSignature: a signed envelope does not verify with the trusted
	// key. Its body must not be used.
	ErrBadSignature = errors.New("manifest: bad signature")
)

// permBits are the mode bits a File may carry besides its type.
const permBits = fs.ModePerm | fs.ModeSetuid | fs.ModeSetgid | fs.ModeSticky

// Times are encoded as Unix nanoseconds, so a time must be the zero Time or
// lie within the range of int64 nanoseconds (years 1678 to 2262). The most
// negative value is left out: the encoding gives its slot to the zero Time.
var (
	minTime = time.Unix(0, math.MinInt64+1)
	maxTime = time.Unix(0, math.MaxInt64)
)

// Validate checks the rules every stored or sent manifest keeps:
//
//   - Kind is KindTemplate or KindClone; Name passes ValidName; a
//     committed manifest (Version > 0) has Parent < Version.
//   - BlockSize is a power of two from MinBlockSize to
//     blockstore.MaxBlockSize.
//   - Paths are relative, slash-separated and clean: not empty, no leading
//     or trailing slash, no empty, "." or ".." element, no NUL, at most
//     MaxPathLen bytes and MaxElemLen per element. They are sorted
//     strictly by byte order (so no duplicates), and the parent directory
//     of every path below the root is listed, as a directory, before it.
//   - Modes are a regular file, a directory, a symlink, a named pipe, a
//     socket, a block device (fs.ModeDevice) or a character device
//     (fs.ModeDevice|fs.ModeCharDevice), with permission, setuid, setgid
//     and sticky bits only.
//   - Size >= 0. A regular file lists ceil(Size/BlockSize) blocks; other
//     entries list none. Named pipes, sockets and devices have Size 0. A
//     symlink has a target of 1 to MaxTargetLen bytes without NUL; other
//     entries have none. Only devices have a non-zero Rdev.
//   - UID and GID are 0 unless Owners is set.
//   - A hard link (Link set): Link is a clean path listed before the link,
//     of an entry that is not a directory and not itself a hard link, and
//     every other field of the link (Mode, Size, MTime, ATime, UID, GID,
//     Rdev, Target, and Blocks by content) equals that entry's. Times
//     compare as instants.
//   - At most MaxFiles entries and MaxBlocks block IDs in all, hard links'
//     not counted.
//   - Times (Created, MTime, ATime) are zero or within int64 Unix
//     nanoseconds.
//
// The cost is linear in the entries and blocks m holds, and a hard link
// whose Blocks shares its file's slice (as Unmarshal gives) costs no more
// than its path.
//
// Errors wrap ErrInvalid.
func (m *Manifest) Validate() error {
	if err := m.validate(); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// validate returns what is wrong with m, without a sentinel: Validate wraps
// it in ErrInvalid, Unmarshal in ErrMalformed.
func (m *Manifest) validate() error {
	if m.Kind != KindTemplate && m.Kind != KindClone {
		return fmt.Errorf("unknown kind %d", m.Kind)
	}
	if err := validName(m.Name); err != nil {
		return err
	}
	if m.Version > 0 && m.Parent >= m.Version {
		return fmt.Errorf("parent version %d is not before version %d", m.Parent, m.Version)
	}
	if err := validTime(m.Created); err != nil {
		return fmt.Errorf("created: %v", err)
	}
	if err := validBlockSize(m.BlockSize); err != nil {
		return err
	}
	if len(m.Files) > MaxFiles {
		return fmt.Errorf("%d files, more than MaxFiles (%d)", len(m.Files), MaxFiles)
	}
	blocks := 0
	for i := range m.Files {
		f := &m.Files[i]
		if err := validPath(f.Path); err != nil {
			return fmt.Errorf("file %d %q: %v", i, f.Path, err)
		}
		if i > 0 && m.Files[i-1].Path >= f.Path {
			return fmt.Errorf("file %d %q: not after file %d %q (paths must be sorted, without duplicates)", i, f.Path, i-1, m.Files[i-1].Path)
		}
		if dir, ok := parentDir(f.Path); ok {
			prev := Manifest{Files: m.Files[:i]}
			p, found := prev.Lookup(dir)
			if !found {
				return fmt.Errorf("file %d %q: parent directory %q is not listed before it", i, f.Path, dir)
			}
			if !p.Mode.IsDir() {
				return fmt.Errorf("file %d %q: parent %q is not a directory", i, f.Path, dir)
			}
		}
		if f.Link != "" {
			if err := validLink(m.Files[:i], f); err != nil {
				return fmt.Errorf("file %d %q: %v", i, f.Path, err)
			}
			continue
		}
		if err := m.validFile(f); err != nil {
			return fmt.Errorf("file %d %q: %v", i, f.Path, err)
		}
		blocks += len(f.Blocks)
		if blocks > MaxBlocks {
			return fmt.Errorf("file %d %q: more than MaxBlocks (%d) block IDs in all", i, f.Path, MaxBlocks)
		}
	}
	return nil
}

// validFile checks one entry that is not a hard link, apart from its path
// and its place.
func (m *Manifest) validFile(f *File) error {
	if f.Mode&^(fs.ModeType|permBits) != 0 {
		return fmt.Errorf("mode %v has bits other than type and permissions", f.Mode)
	}
	if f.Size < 0 {
		return fmt.Errorf("negative size %d", f.Size)
	}
	if err := validTime(f.MTime); err != nil {
		return fmt.Errorf("mtime: %v", err)
	}
	if err := validTime(f.ATime); err != nil {
		return fmt.Errorf("atime: %v", err)
	}
	if !m.Owners && (f.UID != 0 || f.GID != 0) {
		return fmt.Errorf("owner %d:%d in a manifest without Owners", f.UID, f.GID)
	}
	switch f.Mode.Type() {
	case 0:
		if want := blockCount(f.Size, m.BlockSize); uint64(len(f.Blocks)) != want {
			return fmt.Errorf("%d blocks for %d bytes, want %d", len(f.Blocks), f.Size, want)
		}
	case fs.ModeDir, fs.ModeSymlink, fs.ModeNamedPipe, fs.ModeSocket, fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		if len(f.Blocks) != 0 {
			return fmt.Errorf("a %s lists %d blocks", typeName(f.Mode), len(f.Blocks))
		}
	default:
		return fmt.Errorf("mode %v: only regular files, directories, symlinks, named pipes, sockets and devices are allowed", f.Mode)
	}
	if isSpecial(f.Mode) && f.Size != 0 {
		return fmt.Errorf("a %s has size %d", typeName(f.Mode), f.Size)
	}
	if f.Rdev != 0 && f.Mode&fs.ModeDevice == 0 {
		return fmt.Errorf("a %s has a device number (%#x)", typeName(f.Mode), f.Rdev)
	}
	if f.Mode.Type() == fs.ModeSymlink {
		switch {
		case f.Target == "":
			return errors.New("symlink without a target")
		case len(f.Target) > MaxTargetLen:
			return fmt.Errorf("symlink target of %d bytes, more than MaxTargetLen (%d)", len(f.Target), MaxTargetLen)
		case strings.IndexByte(f.Target, 0) >= 0:
			return errors.New("symlink target holds a NUL byte")
		}
	} else if f.Target != "" {
		return fmt.Errorf("a %s has a symlink target", typeName(f.Mode))
	}
	return nil
}

// validLink checks the hard link f against prev, the entries listed before
// it (sorted, and valid themselves).
func validLink(prev []File, f *File) error {
	if err := validPath(f.Link); err != nil {
		return fmt.Errorf("link %q: %v", f.Link, err)
	}
	t, ok := (&Manifest{Files: prev}).Lookup(f.Link)
	switch {
	case !ok:
		return fmt.Errorf("link %q is not listed before the link", f.Link)
	case t.Mode.IsDir():
		return fmt.Errorf("link %q is a directory", f.Link)
	case t.Link != "":
		return fmt.Errorf("link %q is itself a hard link (of %q)", f.Link, t.Link)
	}
	var differs string
	switch {
	case f.Mode != t.Mode:
		differs = fmt.Sprintf("mode %v, not %v", f.Mode, t.Mode)
	case f.Size != t.Size:
		differs = fmt.Sprintf("size %d, not %d", f.Size, t.Size)
	case !f.MTime.Equal(t.MTime):
		differs = fmt.Sprintf("mtime %v, not %v", f.MTime, t.MTime)
	case !f.ATime.Equal(t.ATime):
		differs = fmt.Sprintf("atime %v, not %v", f.ATime, t.ATime)
	case f.UID != t.UID || f.GID != t.GID:
		differs = fmt.Sprintf("owner %d:%d, not %d:%d", f.UID, f.GID, t.UID, t.GID)
	case f.Rdev != t.Rdev:
		differs = fmt.Sprintf("device number %#x, not %#x", f.Rdev, t.Rdev)
	case f.Target != t.Target:
		differs = fmt.Sprintf("target %q, not %q", f.Target, t.Target)
	case !sameBlocks(f.Blocks, t.Blocks):
		differs = "other blocks"
	default:
		return nil
	}
	return fmt.Errorf("hard link of %q has %s", f.Link, differs)
}

// sameBlocks reports whether a and b hold the same IDs, at once when they
// share their array.
func sameBlocks(a, b []blockstore.ID) bool {
	if len(a) != len(b) {
		return false
	}
	if len(a) == 0 || &a[0] == &b[0] {
		return true
	}
	return slices.Equal(a, b)
}

// isSpecial reports whether m is the mode of a named pipe, a socket or a
// device.
func isSpecial(m fs.FileMode) bool {
	return m&(fs.ModeNamedPipe|fs.ModeSocket|fs.ModeDevice) != 0
}

func typeName(m fs.FileMode) string {
	switch m.Type() {
	case 0:
		return "regular file"
	case fs.ModeDir:
		return "directory"
	case fs.ModeSymlink:
		return "symlink"
	case fs.ModeNamedPipe:
		return "named pipe"
	case fs.ModeSocket:
		return "socket"
	case fs.ModeDevice:
		return "block device"
	case fs.ModeDevice | fs.ModeCharDevice:
		return "character device"
	}
	return "special file"
}

// blockCount is ceil(size/blockSize), for size >= 0 and blockSize > 0.
func blockCount(size int64, blockSize uint32) uint64 {
	n := uint64(size) / uint64(blockSize)
	if uint64(size)%uint64(blockSize) != 0 {
		n++
	}
	return n
}

func validBlockSize(bs uint32) error {
	if bs < MinBlockSize || bs > blockstore.MaxBlockSize || bs&(bs-1) != 0 {
		return fmt.Errorf("block size %d is not a power of two from %d to %d", bs, MinBlockSize, blockstore.MaxBlockSize)
	}
	return nil
}

func validTime(t time.Time) error {
	if !t.IsZero() && (t.Before(minTime) || t.After(maxTime)) {
		return fmt.Errorf("%v is outside the years 1678 to 2262", t)
	}
	return nil
}

// validPath checks one path on its own (not its order or parent).
func validPath(p string) error {
	if p == "" {
		return errors.New("empty path")
	}
	if len(p) > MaxPathLen {
		return fmt.Errorf("path of %d bytes, more than MaxPathLen (%d)", len(p), MaxPathLen)
	}
	if strings.IndexByte(p, 0) >= 0 {
		return errors.New("path holds a NUL byte")
	}
	if p[0] == '/' {
		return errors.New("absolute path")
	}
	for elem := range strings.SplitSeq(p, "/") {
		switch {
		case elem == "":
			return errors.New("empty path element (doubled or trailing slash)")
		case elem == "." || elem == "..":
			return fmt.Errorf("path has a %q element", elem)
		case len(elem) > MaxElemLen:
			return fmt.Errorf("path element of %d bytes, more than MaxElemLen (%d)", len(elem), MaxElemLen)
		}
	}
	return nil
}

// parentDir returns the directory holding p, and false when it is the
// root.
func parentDir(p string) (string, bool) {
	i := strings.LastIndexByte(p, '/')
	if i < 0 {
		return "", false
	}
	return p[:i], true
}

// ValidName checks a template name: 1 to MaxNameLen characters from
// [A-Za-z0-9._-], not starting with '.' or '-'. '@' in particular is out:
// the command line writes a version as NAME@VERSION. Errors wrap ErrInvalid.
func ValidName(name string) error {
	if err := validName(name); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

func validName(name string) error {
	if name == "" {
		return errors.New("empty template name")
	}
	if len(name) > MaxNameLen {
		return fmt.Errorf("template name of %d bytes, more than %d", len(name), MaxNameLen)
	}
	if name[0] == '.' || name[0] == '-' {
		return fmt.Errorf("template name %q starts with %q", name, name[0])
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '.' || c == '_' || c == '-' {
			continue
		}
		switch {
		case c == '@':
			return fmt.Errorf("template name %q holds '@' (NAME@VERSION names a version)", name)
		case c >= 0x80:
			return fmt.Errorf("template name %q holds a non-ASCII byte %#x: only letters, digits, '.', '_' and '-' are allowed", name, c)
		}
		return fmt.Errorf("template name %q holds %q: only letters, digits, '.', '_' and '-' are allowed", name, c)
	}
	return nil
}
