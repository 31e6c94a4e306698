package cgofuse

import (
	"syscall"

	"github.com/winfsp/cgofuse/fuse"
)

// hostErrnos turns Go's Windows errnos (invented values for the POSIX
// names, and the Windows errors of the local disk) into WinFsp's, which
// are POSIX names with MSVCRT's numbers. Not run here (no WinFsp).
var hostErrnos = map[syscall.Errno]int{
	syscall.ENOENT:               fuse.ENOENT,
	syscall.EEXIST:               fuse.EEXIST,
	syscall.ERROR_FILE_EXISTS:    fuse.EEXIST,
	syscall.ERROR_ALREADY_EXISTS: fuse.EEXIST,
	syscall.EROFS:                fuse.EROFS,
	syscall.ENOTEMPTY:            fuse.ENOTEMPTY,
	syscall.ERROR_DIR_NOT_EMPTY:  fuse.ENOTEMPTY,
	syscall.ENOTDIR:              fuse.ENOTDIR,
	syscall.EISDIR:               fuse.EISDIR,
	syscall.EINVAL:               fuse.EINVAL,
	syscall.EPERM:                fuse.EPERM,
	syscall.EACCES:               fuse.EACCES,
	syscall.ERROR_ACCESS_DENIED:  fuse.EACCES,
	syscall.EOPNOTSUPP:           fuse.EOPNOTSUPP,
	syscall.EXDEV:                fuse.EXDEV,
	syscall.EMLINK:               fuse.EMLINK,
	syscall.EFBIG:                fuse.EFBIG,
	syscall.ENAMETOOLONG:         fuse.ENAMETOOLONG,
	syscall.ENXIO:                fuse.ENXIO,
	syscall.EBUSY:                fuse.EBUSY,
	syscall.EINTR:                fuse.EINTR,
	syscall.ENOSPC:               fuse.ENOSPC,
	errorDiskFull:                fuse.ENOSPC,
	errorHandleDiskFull:          fuse.ENOSPC,
	syscall.EBADF:                fuse.EBADF,
	syscall.EIO:                  fuse.EIO,
}

// Windows' ERROR_DISK_FULL and ERROR_HANDLE_DISK_FULL, which package
// syscall lacks.
const (
	errorDiskFull       = syscall.Errno(112)
	errorHandleDiskFull = syscall.Errno(39)
)

// hostErrno is en as WinFsp wants it; EIO for what has no POSIX name.
func hostErrno(en syscall.Errno) int {
	if e, ok := hostErrnos[en]; ok {
		return e
	}
	return fuse.EIO
}
