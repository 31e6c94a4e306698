//go:build unix

package writeback

import (
	"fmt"
	"syscall"

	"golang.org/x/sys/unix"
)

// checkSpace refuses to write n more bytes when that would leave less than
// the reserve free on the outbox's disk: ENOSPC, so the seal fails (and
// is retried) before the disk is too full for the stores that map their
// files.
func (o *outbox) checkSpace(n int64) error {
	if o.reserve <= 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(o.dir, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free-n < o.reserve {
		return fmt.Errorf("%d bytes free on the cache disk, %d kept in reserve: %w", free, o.reserve, syscall.ENOSPC)
	}
	return nil
}
