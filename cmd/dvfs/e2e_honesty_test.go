//go:build linux

package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// With a long --sync-interval, changes written and closed (not fsynced)
// are not on the server: dvfs status must say so, and once the server is
// gone dvfs umount must fail, saying what is not on the server.
func TestStatusAndUmountTellUnsyncedChanges(t *testing.T) {
	s := startServer(t, t.TempDir())
	publishBase(t, s, "lab")
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"), "--sync-interval", "10m", "--flush-timeout", "30s")
	cl := filepath.Join(m.dir, "clones", "lab")
	if out, err := shell(fmt.Sprintf(`head -c 8M /dev/urandom | dd of=%s/disk.vmdk bs=1M seek=3 conv=notrunc status=none`, cl)); err != nil {
		t.Fatalf("writing: %v\n%s", err, out)
	}
	st := s.statusOf(t, m)
	if !strings.Contains(st, "NOT SYNCED") || strings.Contains(st, ", synced;") {
		t.Fatalf("8 MiB written, sync interval 10m, nothing fsynced: dvfs status says\n%s", st)
	}
	t.Logf("dvfs status:\n%s", st)
	s.stop(syscall.SIGKILL)
	// An fsync starts a sync, which fails: status shows the stall and why.
	if err := writeSync(filepath.Join(cl, "notes.txt"), []byte("offline\n")); err != nil {
		t.Fatal(err)
	}
	if !m.log.waitFor(time.Minute, func(string) bool { return strings.Contains(s.statusOf(t, m), "SYNC STALLED since") }) {
		t.Fatalf("server gone, a sync failed: dvfs status says\n%s", s.statusOf(t, m))
	}
	t.Logf("dvfs status with the server gone:\n%s", s.statusOf(t, m))
	out, err := exec.Command(dvfsBin, "umount", m.dir).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() == 0 {
		t.Fatalf("dvfs umount with the server gone and 8 MiB unsynced: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "NOT everything is on the server") {
		t.Fatalf("dvfs umount failed without saying what is not on the server:\n%s", out)
	}
	t.Logf("dvfs umount (exit %d): %s", ee.ExitCode(), out)
	<-m.done
	if code := m.cmd.ProcessState.ExitCode(); code == 0 {
		t.Fatalf("the mount process exited 0 with changes not on the server:\n%s", m.log)
	}
}

// A path longer than a manifest takes is refused at the system call
// (ENAMETOOLONG), so it never blocks the clone's sync: the clone's other
// changes still reach the server, and dvfs umount says so.
func TestOverLongPathRefused(t *testing.T) {
	s := startServer(t, t.TempDir())
	publishBase(t, s, "lab")
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"))
	cl := filepath.Join(m.dir, "clones", "lab")
	// Relative to a directory fd, as the kernel limits only what one call
	// names: 16 nested 255-byte names reach 4,095 bytes from the clone root.
	fd, err := unix.Open(cl, unix.O_DIRECTORY|unix.O_RDONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	name := strings.Repeat("d", 255)
	for i := range 16 {
		if err := unix.Mkdirat(fd, name, 0o755); err != nil {
			t.Fatalf("mkdir %d: %v", i, err)
		}
		next, err := unix.Openat(fd, name, unix.O_DIRECTORY|unix.O_RDONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		unix.Close(fd)
		fd = next
	}
	for _, c := range []struct {
		what string
		call func() error
	}{
		{"create", func() error {
			f, err := unix.Openat(fd, "xy", unix.O_CREAT|unix.O_WRONLY, 0o644)
			if err == nil {
				unix.Close(f)
			}
			return err
		}},
		{"mkdir", func() error { return unix.Mkdirat(fd, "xy", 0o755) }},
		{"symlink", func() error { return unix.Symlinkat("target", fd, "xy") }},
	} {
		if err := c.call(); !errors.Is(err, unix.ENAMETOOLONG) {
			t.Errorf("%s at 4,098 bytes from the clone root: %v, want ENAMETOOLONG", c.what, err)
		}
	}
	unix.Close(fd) // before the unmount
	if out, err := shell(fmt.Sprintf(`echo other > %s/other.txt`, cl)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	out, err := exec.Command(dvfsBin, "umount", m.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("dvfs umount: %v\n%s\nmount log:\n%s", err, out, m.log)
	}
	<-m.done
}

// A server whose store cannot write out what it holds at shutdown (its
// directory moved away under it: badger retries that flush without end)
// exits with an error naming the cause, within its bound, instead of
// hanging or exiting 0; and once the directory is back, a restarted
// server has everything, from the store's write-ahead log.
func TestServeStuckStoreExitsWithError(t *testing.T) {
	// Mostly waiting for the store's bound on its close.
	t.Parallel()
	data := t.TempDir()
	s := startServer(t, data)
	tmpl := publishBase(t, s, "lab")
	store := filepath.Join(data, "store")
	if err := os.Rename(store, store+".moved"); err != nil {
		t.Fatal(err)
	}
	s.stop(syscall.SIGTERM)
	st := s.cmd.ProcessState
	if st.ExitCode() <= 0 {
		t.Fatalf("the server ended with %v; want an exit with an error:\n%s", st, s.log)
	}
	if !strings.Contains(s.log.String(), "could not write out its memtable") {
		t.Fatalf("the server's last words do not say its store could not be written:\n%s", s.log)
	}
	t.Logf("server ended with %v", st)
	if err := os.Rename(store+".moved", store); err != nil {
		t.Fatal(err)
	}
	s2 := startServer(t, data)
	if list := s2.dvfs("clone", "list"); !strings.Contains(list, "lab") {
		t.Fatalf("the clone is gone after the restart:\n%s", list)
	}
	exp := filepath.Join(t.TempDir(), "base")
	s2.dvfs("template", "export", "base", exp)
	if got, err := os.ReadFile(filepath.Join(exp, "disk.vmdk")); err != nil || !bytes.Equal(got, tmpl) {
		t.Fatalf("the template's disk does not export byte-exact after the restart (%v)", err)
	}
}
