//go:build !linux

package fs

import (
	"fmt"
	"runtime"
)

// SetReadAhead is Linux's only.
func SetReadAhead(mountpoint string, n int) error {
	return fmt.Errorf("readahead: not settable on %s", runtime.GOOS)
}
