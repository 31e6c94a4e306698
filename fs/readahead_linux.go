package fs

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// SetReadAhead sets the kernel's readahead for the mount at mountpoint to
// n bytes, through the mount's backing device info in sysfs (root only).
func SetReadAhead(mountpoint string, n int) error {
	p, err := readAheadPath(mountpoint)
	if err != nil {
		return err
	}
	if err := os.WriteFile(p, []byte(strconv.Itoa(n>>10)), 0); err != nil {
		return fmt.Errorf("readahead: %w", err)
	}
	return nil
}

// ReadAhead returns the kernel's readahead for the mount at mountpoint,
// in bytes.
func ReadAhead(mountpoint string) (int, error) {
	p, err := readAheadPath(mountpoint)
	if err != nil {
		return 0, err
	}
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("readahead: %w", err)
	}
	kb, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("readahead: %s: %w", p, err)
	}
	return kb << 10, nil
}

// readAheadPath is the sysfs file of the readahead of the mount at
// mountpoint: its backing device info, named by the mount's device.
func readAheadPath(mountpoint string) (string, error) {
	var st unix.Stat_t
	if err := unix.Stat(mountpoint, &st); err != nil {
		return "", fmt.Errorf("readahead: %w", err)
	}
	return fmt.Sprintf("/sys/class/bdi/%d:%d/read_ahead_kb", unix.Major(uint64(st.Dev)), unix.Minor(uint64(st.Dev))), nil
}
