//go:build windows || (linux && cgo && fuse3)

package cgofuse

import (
	"syscall"

	"github.com/dvfs-project/dvfs/fs"
)

// errc maps err to what cgofuse returns, 0 or a negative errno, through
// the core's one table (fs.Errno), logging what the table does not know
// (it becomes EIO).
func (f *fsys) errc(op string, err error) int {
	if err == nil {
		return 0
	}
	en, known := fs.Errno(err)
	if !known {
		f.log.Error("filesystem error", "op", op, "err", err)
	}
	return -hostErrno(en)
}

// errcOf is errc for an errno.
func errcOf(en syscall.Errno) int { return -hostErrno(en) }
