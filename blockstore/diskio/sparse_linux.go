package diskio

import (
	"errors"
	iofs "io/fs"
	"os"

	"golang.org/x/sys/unix"
)

// OpenDirect opens the existing file path with O_DIRECT and flag
// (os.O_RDONLY, os.O_WRONLY or os.O_RDWR), or fails where the file system
// takes no O_DIRECT.
func OpenDirect(path string, flag int) (*os.File, error) {
	fd, err := unix.Open(path, flag|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &iofs.PathError{Op: "open O_DIRECT", Path: path, Err: err}
	}
	return os.NewFile(uintptr(fd), path), nil
}

// Fdatasync makes f's data durable (fdatasync: the size and extents too,
// not the times).
func Fdatasync(f *os.File) error {
	return control(f, "fdatasync", func(fd int) error { return unix.Fdatasync(fd) })
}

// AdviseSequential tells the kernel that f is read in long runs
// (FADV_SEQUENTIAL: a larger readahead). Advice only: an error changes
// nothing.
func AdviseSequential(f *os.File) {
	_ = control(f, "fadvise", func(fd int) error { return unix.Fadvise(fd, 0, 0, unix.FADV_SEQUENTIAL) })
}

// Punch makes [off, off+n) of f read as zeros without changing its length,
// freeing the space (fallocate PUNCH_HOLE); where the file system cannot,
// it writes zeros.
func Punch(f *os.File, off, n int64) error {
	err := control(f, "fallocate", func(fd int) error {
		return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	})
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return writeZeros(f, off, n)
	}
	return err
}

// SeekData returns the first offset at or past off where data (hole
// false) or a hole (hole true) begins in f, as lseek's SEEK_DATA and
// SEEK_HOLE find it; ok is false when no data follows off (past the end,
// for either).
func SeekData(f *os.File, off int64, hole bool) (at int64, ok bool, err error) {
	whence := unix.SEEK_DATA
	if hole {
		whence = unix.SEEK_HOLE
	}
	err = control(f, "lseek", func(fd int) (err error) {
		at, err = unix.Seek(fd, off, whence)
		return err
	})
	if errors.Is(err, unix.ENXIO) {
		return 0, false, nil
	}
	return at, err == nil, err
}

// Allocated returns the bytes f takes on its disk (st_blocks).
func Allocated(f *os.File) (int64, error) {
	var st unix.Stat_t
	err := control(f, "fstat", func(fd int) error { return unix.Fstat(fd, &st) })
	return st.Blocks * 512, err
}

// control runs fn on f's descriptor, again while it is interrupted.
func control(f *os.File, op string, fn func(fd int) error) error {
	rc, err := f.SyscallConn()
	if err != nil {
		return err
	}
	var opErr error
	if err := rc.Control(func(fd uintptr) {
		for {
			if opErr = fn(int(fd)); opErr != unix.EINTR {
				return
			}
		}
	}); err != nil {
		return err
	}
	if opErr != nil {
		return &iofs.PathError{Op: op, Path: f.Name(), Err: opErr}
	}
	return nil
}
