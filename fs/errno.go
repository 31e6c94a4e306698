package fs

import (
	"context"
	"errors"
	"syscall"
)

// errnos maps the sentinel errors to errnos, checked in order with
// errors.Is.
var errnos = []struct {
	err   error
	errno syscall.Errno
}{
	{ErrNotExist, syscall.ENOENT},
	{ErrExist, syscall.EEXIST},
	{ErrReadOnly, syscall.EROFS},
	{ErrNotEmpty, syscall.ENOTEMPTY},
	{ErrNotDir, syscall.ENOTDIR},
	{ErrIsDir, syscall.EISDIR},
	{ErrInvalid, syscall.EINVAL},
	{ErrPermission, syscall.EPERM},
	{ErrNotSupported, syscall.EOPNOTSUPP},
	{ErrCrossDevice, syscall.EXDEV},
	{ErrTooManyLinks, syscall.EMLINK},
	{ErrTooLarge, syscall.EFBIG},
	{ErrNameTooLong, syscall.ENAMETOOLONG},
	{ErrNoData, syscall.ENXIO},
	{ErrBusy, syscall.EBUSY},
	{context.Canceled, syscall.EINTR},
	{context.DeadlineExceeded, syscall.EINTR},
}

// Errno is the one table every adapter answers errors with: a sentinel
// of this package (or a context error) becomes its errno, and a
// syscall.Errno anywhere in the chain (an error of the local disk, such
// as ENOSPC) passes through; known is true for these. Anything else is
// EIO with known false: the adapter logs it, since the program only sees
// EIO. nil is 0.
func Errno(err error) (errno syscall.Errno, known bool) {
	if err == nil {
		return 0, true
	}
	for _, e := range errnos {
		if errors.Is(err, e.err) {
			return e.errno, true
		}
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en, true
	}
	return syscall.EIO, false
}
