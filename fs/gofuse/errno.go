package gofuse

import (
	"context"
	"errors"
	"syscall"

	"github.com/dvfs-project/dvfs/fs"
)

// errnos maps the core's sentinel errors to errnos, checked in order with
// errors.Is.
var errnos = []struct {
	err   error
	errno syscall.Errno
}{
	{fs.ErrNotExist, syscall.ENOENT},
	{fs.ErrExist, syscall.EEXIST},
	{fs.ErrReadOnly, syscall.EROFS},
	{fs.ErrNotEmpty, syscall.ENOTEMPTY},
	{fs.ErrNotDir, syscall.ENOTDIR},
	{fs.ErrIsDir, syscall.EISDIR},
	{fs.ErrInvalid, syscall.EINVAL},
	{fs.ErrPermission, syscall.EPERM},
	{fs.ErrNotSupported, syscall.EOPNOTSUPP},
	{fs.ErrCrossDevice, syscall.EXDEV},
	{fs.ErrTooManyLinks, syscall.EMLINK},
	{fs.ErrTooLarge, syscall.EFBIG},
	{fs.ErrNameTooLong, syscall.ENAMETOOLONG},
	{fs.ErrNoData, syscall.ENXIO},
	{fs.ErrBusy, syscall.EBUSY},
	{context.Canceled, syscall.EINTR},
	{context.DeadlineExceeded, syscall.EINTR},
}

// errno maps err to an errno. A syscall.Errno anywhere in the chain (an
// error of the local disk, such as ENOSPC) passes through. Anything else
// is logged and becomes EIO. go-fuse's own ToErrno is not used: it
// compares with == and turns wrapped errors into ENOSYS.
func (m *mount) errno(op string, err error) syscall.Errno {
	if err == nil {
		return 0
	}
	for _, e := range errnos {
		if errors.Is(err, e.err) {
			return e.errno
		}
	}
	var en syscall.Errno
	if errors.As(err, &en) {
		return en
	}
	m.log.Error("filesystem error", "op", op, "err", err)
	return syscall.EIO
}
