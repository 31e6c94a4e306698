//go:build linux

package gofuse

import (
	"syscall"
	"time"

	"github.com/dvfs-project/dvfs/fs"
)

// errno maps err to an errno through the core's one table (fs.Errno),
// logging what it does not know, which becomes EIO. go-fuse's own ToErrno
// is not used: it compares with == and turns wrapped errors into ENOSYS.
func (m *mount) errno(op string, err error) syscall.Errno {
	en, known := fs.Errno(err)
	if !known {
		m.log.Error("filesystem error", "op", op, "err", err)
	}
	return en
}

// timed reports to Options.Observe how long the operation op that began
// at start took; each request's method defers it.
func (m *mount) timed(op string, start time.Time) {
	if m.opts.Observe != nil {
		m.opts.Observe(op, time.Since(start))
	}
}
