package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

func TestMountpointPath(t *testing.T) {
	for in, want := range map[string]string{`X:`: `X:`, `x:\`: `x:`, `Q:/`: `Q:`} {
		if got, err := mountpointPath(in); err != nil || got != want {
			t.Errorf("mountpointPath(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`XY:`, `1:`, `X:\dvfs`, `dvfs`} {
		got, err := mountpointPath(in)
		if err != nil || driveLetter(got) || !filepath.IsAbs(got) {
			t.Errorf("mountpointPath(%q) = %q, %v; want an absolute directory", in, got, err)
		}
	}
}

// TestNoWinFsp: without WinFsp (as under Wine) dvfs mount says so, where
// cgofuse would panic.
func TestNoWinFsp(t *testing.T) {
	if !disktest.Wine() {
		// Never in CI: this file builds for Windows only, and CI runs it
		// under Wine, where Wine() holds and nothing skips.
		disktest.SkipOffLinux(t, "WinFsp may be installed here: only Wine is known to have none")
	}
	if err := checkMountpoint(filepath.Join(disktest.TempDir(t), "dvfs")); err == nil || !strings.Contains(err.Error(), "WinFsp is not installed") {
		t.Fatalf("checkMountpoint without WinFsp: %v", err)
	}
}

// TestCheckMountpoint: WinFsp takes a directory that does not exist yet
// in one that does; dvfs umount finds nothing mounted where nothing is.
func TestCheckMountpoint(t *testing.T) {
	dir := disktest.TempDir(t)
	if err := checkMountpointPath(filepath.Join(dir, "dvfs")); err != nil {
		t.Errorf("a new directory in an existing one: %v", err)
	}
	if err := checkMountpointPath(dir); err == nil {
		t.Error("an existing directory was taken")
	}
	if err := checkMountpointPath(filepath.Join(dir, "no", "dvfs")); err == nil {
		t.Error("a directory in a missing one was taken")
	}
	if err := checkMounted(filepath.Join(dir, "dvfs")); !errors.Is(err, errNotMounted) {
		t.Errorf("checkMounted of a missing directory: %v", err)
	}
	if err := os.Mkdir(filepath.Join(dir, "dvfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := checkMounted(filepath.Join(dir, "dvfs")); err != nil {
		t.Errorf("checkMounted of a directory that is there: %v", err)
	}
}
