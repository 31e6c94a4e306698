//go:build linux && cgo && fuse3

package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func init() { e2eBuildFlags = []string{"-tags", "fuse3"} }

// A clone written through the cgofuse adapter and unmounted with dvfs
// umount reads the same through go-fuse on another workstation: the flag
// reaches the adapter, and an unmount from outside flushes and syncs.
func TestCloneMovesFromCgofuse(t *testing.T) {
	t.Parallel()
	cloneMovesBetween(t, []string{"--fuse", "cgofuse"}, []string{"--fuse", "gofuse"})
}

// dvfs umount's request on the status socket, the way it ends a Windows
// mount, run here against a cgofuse mount with --windows-names: the mount
// unmounts itself, syncs and exits cleanly, and what was written under a
// mapped name reaches another workstation as the bytes it stands for.
func TestUnmountRequestSyncs(t *testing.T) {
	s := startServer(t, t.TempDir())
	publishBase(t, s, "lab")
	work := t.TempDir()
	a := s.startMount(t, filepath.Join(work, "cacheA"), filepath.Join(work, "mntA"), "--fuse", "cgofuse", "--windows-names")
	cl := filepath.Join(a.dir, "clones", "lab")
	if out, err := shell(fmt.Sprintf("set -e; echo written > '%s'; cat '%s' >/dev/null; sync",
		filepath.Join(cl, "vm\uF03A1.log"), filepath.Join(cl, "DISK.VMX"))); err != nil {
		t.Fatalf("writing on A: %v\n%s", err, out)
	}
	mp, err := mountpointPath(a.dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := requestUnmount(context.Background(), statusSocket(mp)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-a.done:
	case <-time.After(60 * time.Second):
		t.Fatalf("mount still running 60s after the unmount request:\n%s", a.log)
	}
	if !strings.Contains(a.log.String(), "clean exit") {
		t.Fatalf("no clean exit after the unmount request:\n%s", a.log)
	}
	b := s.startMount(t, filepath.Join(work, "cacheB"), filepath.Join(work, "mntB"))
	got, err := os.ReadFile(filepath.Join(b.dir, "clones", "lab", "vm:1.log"))
	if err != nil || string(got) != "written\n" {
		t.Fatalf("B reads vm:1.log: %q, %v", got, err)
	}
}
