package fs

import (
	"errors"
	iofs "io/fs"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Sentinel errors. Methods wrap them (and errors of the local disk, which
// carry their syscall.Errno); adapters test with errors.Is and map each to
// an errno in one table.
var (
	// ErrNotExist: no such entry (ENOENT).
	ErrNotExist = iofs.ErrNotExist
	// ErrExist: the name is taken (EEXIST).
	ErrExist = iofs.ErrExist
	// ErrInvalid: an argument makes no sense here (EINVAL).
	ErrInvalid = iofs.ErrInvalid
	// ErrPermission: the operation is not allowed on this entry (EPERM).
	ErrPermission = iofs.ErrPermission
	// ErrReadOnly: a change to a template, to the fixed top of the tree,
	// or to a clone that Config.Writable refuses (EROFS).
	ErrReadOnly = errors.New("read-only file system")
	// ErrNotEmpty: rmdir or rename over a directory that holds entries
	// (ENOTEMPTY).
	ErrNotEmpty = errors.New("directory not empty")
	// ErrNotDir: a directory was expected (ENOTDIR).
	ErrNotDir = errors.New("not a directory")
	// ErrIsDir: a non-directory was expected (EISDIR).
	ErrIsDir = errors.New("is a directory")
	// ErrNotSupported: dvfs does not do this, e.g. RENAME_EXCHANGE (ENOTSUP).
	ErrNotSupported = errors.New("operation not supported")
	// ErrCrossDevice: a rename between two clones, or between a clone and
	// a template (EXDEV).
	ErrCrossDevice = errors.New("rename across clones")
	// ErrTooManyLinks: a file has as many names as it may (EMLINK).
	ErrTooManyLinks = errors.New("too many links")
	// ErrTooLarge: a file would grow past MaxFileSize (EFBIG).
	ErrTooLarge = errors.New("file too large")
	// ErrNoData: no data at or past an offset (ENXIO), as lseek's
	// SEEK_DATA and SEEK_HOLE say it.
	ErrNoData = errors.New("no data at or past the offset")
	// ErrNameTooLong: a name longer than MaxNameLen bytes (ENAMETOOLONG).
	ErrNameTooLong = errors.New("file name too long")
	// ErrBaseChanged: a clone's overlay was made on another generation of
	// the clone than the Catalog now serves; it is not opened, so that
	// local blocks are never laid over a base they were not copied from.
	ErrBaseChanged = errors.New("clone base generation changed under its local overlay")
	// ErrBusy: the clone has open files, so its overlay cannot be dropped
	// (EBUSY).
	ErrBusy = errors.New("clone has open files")
	// ErrCorrupt: overlay metadata that does not decode or does not fit
	// together. Such a clone is not opened.
	ErrCorrupt = blockstore.ErrCorrupt
)

// notExist reports whether err says something does not exist, in either
// vocabulary a Catalog may use.
func notExist(err error) bool {
	return errors.Is(err, iofs.ErrNotExist) || errors.Is(err, blockstore.ErrNotFound)
}
