package diskio

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// available returns the bytes free for this user (under a quota) on the
// disk that holds dir.
func available(dir string) (int64, error) {
	sp, err := Space(dir)
	return int64(sp.Avail), err
}

// DiskSpace is the size of a disk and its free bytes.
type DiskSpace struct {
	// Total is the size of the disk (as this user sees it, under a quota).
	Total uint64
	// Free is what is free on the disk; Avail, what of it this user may take.
	Free, Avail uint64
}

// Space returns the size and free space of the disk that holds dir
// (GetDiskFreeSpaceEx).
func Space(dir string) (DiskSpace, error) {
	p, err := windows.UTF16PtrFromString(dir)
	if err != nil {
		return DiskSpace{}, fmt.Errorf("disk space of %s: %w", dir, err)
	}
	var sp DiskSpace
	if err := windows.GetDiskFreeSpaceEx(p, &sp.Avail, &sp.Total, &sp.Free); err != nil {
		return DiskSpace{}, fmt.Errorf("disk space of %s: %w", dir, err)
	}
	return sp, nil
}
