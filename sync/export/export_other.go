//go:build !linux

package export

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// mknod fails outside Linux (Windows has no FIFOs, sockets or device
// nodes in its file systems): a template that holds one cannot be
// exported there.
func mknod(path string, typ fs.FileMode, _ uint64) error {
	return &fs.PathError{Op: "mknod", Path: path, Err: fmt.Errorf("a %v file cannot be made here: %w", typ, errors.ErrUnsupported)}
}

// chown does nothing outside Linux (Windows' files have ACLs, not a Unix
// owner and group): an export there is owned by the user who runs it.
func chown(string, uint32, uint32) error { return nil }

// setTimes sets path's atime and mtime (to Windows' 100 ns). A manifest
// without atimes gives the mtime as atime; a zero time leaves the file's
// own. A symlink keeps its own times: os.Chtimes would set its target's.
func setTimes(path string, atime, mtime time.Time) error {
	if atime.IsZero() {
		atime = mtime
	}
	if st, err := os.Lstat(path); err != nil || st.Mode().Type() == fs.ModeSymlink {
		return err
	}
	return os.Chtimes(path, atime, mtime)
}
