package export

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"

	"golang.org/x/sys/unix"
)

// chown sets path's owner and group, not following a symlink. Run by
// another user than root, an export keeps the owners it may set (its own
// user and groups) and leaves the rest to it, as tar does; root must set
// them all.
func chown(path string, uid, gid uint32) error {
	err := os.Lchown(path, int(uid), int(gid))
	if errors.Is(err, unix.EPERM) && os.Geteuid() != 0 {
		return nil
	}
	return err
}

// mknod makes path a FIFO, a socket, or a block or char device, as typ
// says.
func mknod(path string, typ fs.FileMode, rdev uint64) error {
	kind, ok := nodeType(typ)
	if !ok {
		return fmt.Errorf("cannot make a %v file", typ)
	}
	if err := unix.Mknod(path, kind|0o600, int(rdev)); err != nil {
		return &fs.PathError{Op: "mknod", Path: path, Err: err}
	}
	return nil
}

// nodeType is the st_mode file type mknod(2) makes for an entry of type
// typ: a FIFO, a socket, or a block or char device.
func nodeType(typ fs.FileMode) (uint32, bool) {
	switch typ {
	case fs.ModeNamedPipe:
		return unix.S_IFIFO, true
	case fs.ModeSocket:
		return unix.S_IFSOCK, true
	case fs.ModeDevice:
		return unix.S_IFBLK, true
	case fs.ModeDevice | fs.ModeCharDevice:
		return unix.S_IFCHR, true
	}
	return 0, false
}

// setTimes sets path's atime and mtime, to the nanosecond, without
// following a symlink. A manifest without atimes (ATime zero) gives the
// mtime as atime; a zero time leaves the file's own.
func setTimes(path string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	ts := []unix.Timespec{timespec(atime), timespec(mtime)}
	if err := unix.UtimesNanoAt(unix.AT_FDCWD, path, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return &fs.PathError{Op: "utimensat", Path: path, Err: err}
	}
	return nil
}

func timespec(t time.Time) unix.Timespec {
	if t.IsZero() {
		return unix.Timespec{Nsec: unix.UTIME_OMIT}
	}
	return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())}
}
