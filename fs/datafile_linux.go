package fs

import (
	"errors"
	iofs "io/fs"

	"golang.org/x/sys/unix"
)

func (f osDataFile) Sync() error {
	return f.control("fdatasync", func(fd int) error { return unix.Fdatasync(fd) })
}

func (f osDataFile) Punch(off, n int64) error {
	err := f.control("fallocate", func(fd int) error {
		return unix.Fallocate(fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, off, n)
	})
	if errors.Is(err, unix.EOPNOTSUPP) || errors.Is(err, unix.ENOSYS) {
		return zeroFill(f, off, n)
	}
	return err
}

func (f osDataFile) SeekData(off int64, hole bool) (int64, bool, error) {
	whence := unix.SEEK_DATA
	if hole {
		whence = unix.SEEK_HOLE
	}
	var at int64
	err := f.control("lseek", func(fd int) (err error) {
		at, err = unix.Seek(fd, off, whence)
		return err
	})
	if errors.Is(err, unix.ENXIO) {
		return 0, false, nil
	}
	return at, err == nil, err
}

// control runs fn on the file's descriptor, again while it is interrupted.
func (f osDataFile) control(op string, fn func(fd int) error) error {
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
