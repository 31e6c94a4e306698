package main

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
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

// checkMountpoint refuses to mount without WinFsp (cgofuse would panic),
// and a mountpoint WinFsp cannot take.
func checkMountpoint(mountpoint string) error {
	if err := winfspInstalled(); err != nil {
		return err
	}
	return checkMountpointPath(mountpoint)
}

// winfspInstalled finds WinFsp's DLL where cgofuse looks for it: on the
// DLL search path, or in the bin folder of the InstallDir its installer
// records in HKLM\Software\WinFsp (32-bit view).
func winfspInstalled() error {
	dll := "winfsp-" + map[string]string{"amd64": "x64", "arm64": "a64", "386": "x86"}[runtime.GOARCH] + ".dll"
	if d, err := windows.LoadDLL(dll); err == nil {
		d.Release()
		return nil
	}
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `Software\WinFsp`, registry.QUERY_VALUE|registry.WOW64_32KEY)
	if err == nil {
		defer k.Close()
		if dir, _, err := k.GetStringValue("InstallDir"); err == nil {
			if _, err := os.Stat(filepath.Join(dir, "bin", dll)); err == nil {
				return nil
			}
		}
	}
	return fmt.Errorf("WinFsp is not installed (no %s): dvfs mount serves through it; install it from winfsp.dev", dll)
}

// checkMountpointPath refuses a mountpoint WinFsp cannot take: a drive
// letter in use, or a directory that exists already or whose parent does
// not (WinFsp makes the mountpoint directory itself, as a reparse point).
func checkMountpointPath(mountpoint string) error {
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
