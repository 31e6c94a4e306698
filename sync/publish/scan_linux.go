package publish

import (
	"fmt"
	"io/fs"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// lstat returns path's entry without its path, blocks or target: its
// owner and group, its mode (setuid, setgid and sticky included), its
// atime and mtime to the nanosecond, its size, Rdev for a device, and for
// a non-directory with more than one name, what tells its hard links
// apart.
func lstat(path string) (scanned, error) {
	var st unix.Stat_t
	if err := unix.Lstat(path, &st); err != nil {
		return scanned{}, &fs.PathError{Op: "lstat", Path: path, Err: err}
	}
	mode, ok := fileMode(uint32(st.Mode))
	if !ok {
		return scanned{}, fmt.Errorf("%s: file type %#o cannot be part of a template", path, st.Mode&unix.S_IFMT)
	}
	e := scanned{f: manifest.File{
		Mode:  mode,
		MTime: time.Unix(st.Mtim.Unix()).UTC(),
		ATime: time.Unix(st.Atim.Unix()).UTC(),
		UID:   st.Uid,
		GID:   st.Gid,
	}}
	switch mode.Type() {
	case 0:
		e.f.Size = st.Size
	case fs.ModeDevice, fs.ModeDevice | fs.ModeCharDevice:
		e.f.Rdev = uint64(st.Rdev)
	}
	if !mode.IsDir() && st.Nlink > 1 {
		e.dev, e.ino, e.nlink = uint64(st.Dev), st.Ino, uint64(st.Nlink)
	}
	return e, nil
}

// fileMode converts st_mode to an fs.FileMode (as os.Lstat does); false
// for a file type it does not know.
func fileMode(m uint32) (fs.FileMode, bool) {
	mode := fs.FileMode(m & 0o777)
	switch m & unix.S_IFMT {
	case unix.S_IFREG:
	case unix.S_IFDIR:
		mode |= fs.ModeDir
	case unix.S_IFLNK:
		mode |= fs.ModeSymlink
	case unix.S_IFIFO:
		mode |= fs.ModeNamedPipe
	case unix.S_IFSOCK:
		mode |= fs.ModeSocket
	case unix.S_IFBLK:
		mode |= fs.ModeDevice
	case unix.S_IFCHR:
		mode |= fs.ModeDevice | fs.ModeCharDevice
	default:
		return 0, false
	}
	if m&unix.S_ISUID != 0 {
		mode |= fs.ModeSetuid
	}
	if m&unix.S_ISGID != 0 {
		mode |= fs.ModeSetgid
	}
	if m&unix.S_ISVTX != 0 {
		mode |= fs.ModeSticky
	}
	return mode, true
}
