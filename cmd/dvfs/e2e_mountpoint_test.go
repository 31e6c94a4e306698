//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
)

// mountOnce runs `dvfs mount` to its end (for mounts that must fail).
func (s *serverProc) mountOnce(t *testing.T, cache, mountpoint string) (string, error) {
	t.Helper()
	requireFUSE(t)
	// A mount that is accepted serves until stopped: the deadline ends it
	// (and the test fails on the missing refusal).
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dvfsBin, "mount", "--cache", cache, mountpoint)
	cmd.Env = append(os.Environ(), "DVFS_SERVER="+s.url, "DVFS_TOKEN="+s.token)
	out, err := cmd.CombinedOutput()
	if ctx.Err() != nil {
		forceUnmount(mountpoint) // the stacked mount, killed
		return string(out), fmt.Errorf("the mount was accepted and served until killed")
	}
	return string(out), err
}

// A mount on a regular file or a missing directory fails before anything
// is created or mounted; dvfs umount of a plain directory says it is not
// mounted.
func TestMountpointChecks(t *testing.T) {
	s := startServer(t, t.TempDir())
	work := t.TempDir()
	file := filepath.Join(work, "file")
	os.WriteFile(file, []byte("x"), 0o644)
	for _, tc := range []struct {
		name, mountpoint, want string
	}{
		{"regular file", file, "not a directory"},
		{"missing directory", filepath.Join(work, "missing"), "no such file or directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cache := filepath.Join(work, "cache-"+strings.ReplaceAll(tc.name, " ", "-"))
			out, err := s.mountOnce(t, cache, tc.mountpoint)
			t.Cleanup(func() { forceUnmount(tc.mountpoint) })
			if err == nil || !strings.Contains(out, tc.want) {
				t.Fatalf("mount on %s: err %v, want %q in:\n%s", tc.name, err, tc.want, out)
			}
			if m, _ := mountinfo.Mounted(tc.mountpoint); m {
				t.Errorf("a failed mount left a mount on %s", tc.mountpoint)
			}
			if _, err := os.Stat(cache); !os.IsNotExist(err) {
				t.Errorf("a failed mount created the cache %s (stat: %v)", cache, err)
			}
		})
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "x" {
		t.Errorf("the file under the failed mount reads %q, %v", b, err)
	}
	plain := filepath.Join(work, "plain")
	os.Mkdir(plain, 0o755)
	out, err := s.try("umount", plain)
	if err == nil || !strings.Contains(out, "not mounted") {
		t.Errorf("umount of a plain directory: err %v, want \"not mounted\" in:\n%s", err, out)
	}
}

// A second mount on a mounted directory (another cache) is refused, and
// the first mount's status socket and pid file stay: dvfs status sees it
// and dvfs umount waits for it.
func TestSecondMountRefused(t *testing.T) {
	s := startServer(t, t.TempDir())
	work := t.TempDir()
	mnt := filepath.Join(work, "mnt")
	m := s.startMount(t, filepath.Join(work, "cache1"), mnt)
	out, err := s.mountOnce(t, filepath.Join(work, "cache2"), mnt)
	if err == nil || !strings.Contains(out, "already a mount point") {
		t.Fatalf("second mount: err %v, want a refusal:\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(work, "cache2")); !os.IsNotExist(err) {
		t.Errorf("the refused mount created its cache (stat: %v)", err)
	}
	if out, err := s.try("status", mnt); err != nil {
		t.Errorf("dvfs status of the first mount after the refused second: %v\n%s", err, out)
	}
	if _, err := os.Stat(mountPIDFile(mnt)); err != nil {
		t.Errorf("the first mount's pid file: %v", err)
	}
	m.unmount()
	select {
	case <-m.done:
	default:
		t.Errorf("dvfs umount returned while the mount process still runs")
	}
}
