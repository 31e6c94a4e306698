//go:build unix

package diskio

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// available returns the bytes free for an unprivileged writer on the disk
// that holds dir (statfs).
func available(dir string) (int64, error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, fmt.Errorf("statfs %s: %w", dir, err)
	}
	return int64(st.Bavail) * int64(st.Bsize), nil
}
