//go:build unix

package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/moby/sys/mountinfo"
)

// mountpointPath is the absolute path of the mountpoint given.
func mountpointPath(p string) (string, error) { return filepath.Abs(p) }

// checkMountpoint refuses a mountpoint the kernel would reject or that a
// mount already covers, before anything is created or mounted: mounting on
// a file leaves a dead mount over it, and a second mount stacked on a live
// one hides it and takes its status socket and pid file.
// (moby/sys/mountinfo reads /proc/self/mountinfo correctly, escapes and
// all, where a hand-written parser would not.)
func checkMountpoint(mountpoint string) error {
	fi, err := os.Stat(mountpoint)
	if err != nil {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("mountpoint %s is not a directory", mountpoint)
	}
	mounted, err := mountinfo.Mounted(mountpoint)
	if err != nil {
		return fmt.Errorf("mountpoint %s: %w", mountpoint, err)
	}
	if mounted {
		return fmt.Errorf("%s is already a mount point (another dvfs mount? unmount it first with dvfs umount %s)", mountpoint, mountpoint)
	}
	return nil
}

// checkMounted is dvfs umount's check that there is something to unmount.
func checkMounted(mountpoint string) error {
	mounted, err := mountinfo.Mounted(mountpoint)
	if err != nil {
		return fmt.Errorf("%s: %w", mountpoint, err)
	}
	if !mounted {
		return fmt.Errorf("%s: %w", mountpoint, errNotMounted)
	}
	return nil
}
