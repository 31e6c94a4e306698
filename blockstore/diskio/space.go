//go:build unix || windows

package diskio

import (
	"fmt"
	"syscall"
)

// CheckFree refuses to take need more bytes on the disk that holds dir
// when that would leave less than reserve free for an unprivileged
// writer: an error wrapping ENOSPC. A reserve of 0 or less checks nothing.
// It is how the overlay, the outbox, the cache and the server's uploads
// keep a full disk away from the stores that map their files (a write into a mapped page on a
// full disk is a SIGBUS).
func CheckFree(dir string, need, reserve int64) error {
	if reserve <= 0 {
		return nil
	}
	free, err := available(dir)
	if err != nil {
		return err
	}
	if free-need < reserve {
		return fmt.Errorf("%d bytes free on the disk of %s, %d kept in reserve: %w", free, dir, reserve, syscall.ENOSPC)
	}
	return nil
}
