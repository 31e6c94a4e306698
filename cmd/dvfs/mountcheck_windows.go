package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
)

// mountpointPath is the mountpoint given: a drive letter ("X:") as it is,
// a directory as an absolute path.
func mountpointPath(p string) (string, error) {
	if driveLetter(p) {
		return p[:2], nil
	}
	return filepath.Abs(p)
}

// driveLetter reports whether p names a drive ("X:" or "X:\").
func driveLetter(p string) bool {
	if len(p) != 2 && !(len(p) == 3 && (p[2] == '\\' || p[2] == '/')) {
		return false
	}
	c := p[0] | 0x20
	return c >= 'a' && c <= 'z' && p[1] == ':'
}

// checkMountpoint refuses a mountpoint WinFsp cannot take: a drive letter
// in use, or a directory that exists already or whose parent does not
// (WinFsp makes the mountpoint directory itself, as a reparse point).
// Not run: no WinFsp on the project's machines.
func checkMountpoint(mountpoint string) error {
	if driveLetter(mountpoint) {
		if _, err := os.Stat(mountpoint + `\`); err == nil {
			return fmt.Errorf("drive %s is in use (another dvfs mount? unmount it first)", mountpoint)
		}
		return nil
	}
	if _, err := os.Lstat(mountpoint); err == nil {
		return fmt.Errorf("mountpoint %s exists: WinFsp mounts at a directory it makes itself; give a path that does not exist yet, or a free drive letter", mountpoint)
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("mountpoint: %w", err)
	}
	if fi, err := os.Stat(filepath.Dir(mountpoint)); err != nil || !fi.IsDir() {
		return fmt.Errorf("mountpoint %s: its parent must be a directory", mountpoint)
	}
	return nil
}

// checkMounted is dvfs umount's check that there is something to unmount:
// the mountpoint exists (WinFsp removes it when the mount ends).
func checkMounted(mountpoint string) error {
	p := mountpoint
	if driveLetter(p) {
		p += `\`
	}
	if _, err := os.Stat(p); err != nil {
		return fmt.Errorf("%s: %w", mountpoint, errNotMounted)
	}
	return nil
}
