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

// ReadAhead is Linux's only.
func ReadAhead(mountpoint string) (int, error) {
	return 0, fmt.Errorf("readahead: not readable on %s", runtime.GOOS)
}
