//go:build linux

package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
)

// dvfs status --json gives the mount's status as JSON; another local
// user asking a mount that is not theirs sees it without its clones
// (the mount learns who asks from the status socket, SO_PEERCRED), and
// root sees them all.
func TestStatusShowsOnlyCallersClones(t *testing.T) {
	requireRoot(t, "to run dvfs status as another user")
	s := startServer(t, t.TempDir())
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"))
	publishRandom(t, s, "lab", 1<<20, 's')
	s.dvfs("clone", "create", "--template", "lab", "c1")
	if err := writeSync(filepath.Join(m.dir, "clones", "c1", "f"), []byte("hello")); err != nil {
		t.Fatal(err)
	}

	status := func(cred *syscall.Credential) []mountStatus {
		t.Helper()
		cmd := exec.Command(dvfsBin, "status", "--json", m.dir)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("dvfs status --json (as %v): %v\n%s", cred, err, out)
		}
		var sts []mountStatus
		if err := json.Unmarshal(out, &sts); err != nil || len(sts) != 1 {
			t.Fatalf("dvfs status --json: %v, %d mounts:\n%s", err, len(sts), out)
		}
		return sts
	}
	root := status(nil)[0]
	if root.Mountpoint != m.dir || len(root.Clones) != 1 || root.Clones[0].Clone != "c1" || root.HiddenClones != 0 {
		t.Errorf("root's status: mountpoint %s, clones %+v, hidden %d", root.Mountpoint, root.Clones, root.HiddenClones)
	}
	// nobody may run the binary under test, and asks the same mount.
	if err := os.Chmod(filepath.Dir(dvfsBin), 0o755); err != nil {
		t.Fatal(err)
	}
	other := status(&syscall.Credential{Uid: 65534, Gid: 65534})[0]
	if other.Mountpoint != m.dir || len(other.Clones) != 0 || other.HiddenClones != 1 {
		t.Errorf("another user's status: mountpoint %s, clones %+v, hidden %d; want the mount without its one clone", other.Mountpoint, other.Clones, other.HiddenClones)
	}
}
