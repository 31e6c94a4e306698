package fs

import (
	"fmt"
	"os"
	"strconv"

	"golang.org/x/sys/unix"
)

// SetReadAhead sets the kernel's readahead for the mount at mountpoint to
// n bytes, through the mount's backing device info in sysfs (root only).
func SetReadAhead(mountpoint string, n int) error {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return fmt.Errorf("readahead: %w", err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev)))
	if err := os.WriteFile(p, []byte(strconv.Itoa(n>>10)), 0); err != nil {
		return fmt.Errorf("readahead: %w", err)
	}
	return nil
}
