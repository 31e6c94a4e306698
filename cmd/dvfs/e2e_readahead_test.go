//go:build linux

package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvfs-project/dvfs/fs"
)

// TestMountReadAheadFlag: --readahead reaches the kernel (the mount's
// read_ahead_kb in sysfs): the default, a size, and 0 for the kernel's
// own; a size out of range is refused before anything is mounted.
func TestMountReadAheadFlag(t *testing.T) {
	s := startServer(t, t.TempDir())
	work := t.TempDir()
	for i, c := range []struct {
		flag   []string
		wantKB int
	}{
		{nil, fs.DefaultReadAhead >> 10},
		{[]string{"--readahead", "2MiB"}, 2048},
		{[]string{"--readahead", "0"}, 128},
	} {
		name := "default"
		if c.flag != nil {
			name = strings.Join(c.flag, " ")
		}
		t.Run(name, func(t *testing.T) {
			mnt := filepath.Join(work, fmt.Sprint("mnt", i))
			m := s.startMount(t, filepath.Join(work, fmt.Sprint("cache", i)), mnt, c.flag...)
			if got := mountReadAheadKB(t, mnt); got != c.wantKB {
				t.Errorf("read_ahead_kb %d, want %d", got, c.wantKB)
			}
			m.unmount()
		})
	}
	for _, bad := range []string{"1KiB", "1GiB", "lots"} {
		mnt := filepath.Join(work, "bad")
		os.MkdirAll(mnt, 0o755)
		cmd := exec.Command(dvfsBin, "mount", "--cache", filepath.Join(work, "cache-bad"), "--readahead", bad, mnt)
		cmd.Env = append(os.Environ(), "DVFS_SERVER="+s.url, "DVFS_TOKEN="+s.token)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "--readahead") {
			forceUnmount(mnt)
			t.Errorf("mount --readahead %s: %v, want a refusal naming the flag\n%s", bad, err, out)
		}
	}
}

// mountReadAheadKB reads the kernel's readahead of the mount at dir.
func mountReadAheadKB(t *testing.T, dir string) int {
	t.Helper()
	n, err := fs.ReadAhead(dir)
	if err != nil {
		t.Fatal(err)
	}
	return n >> 10
}
