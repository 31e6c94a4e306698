//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// asNobody runs a shell command as the local user nobody.
func asNobody(script string) (string, error) {
	out, err := exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "sh", "-c", script).CombinedOutput()
	return string(out), err
}

// A mount shared with the other local users (--allow-other) gives them
// the templates, not the mounting user's clones: the clones directory is
// its owner's (0500) unless --share-clones, and every file's mode
// decides the rest, as on a local disk. Before, every 0644 file of a
// clone was readable by every local user.
func TestAllowOtherKeepsClonesPrivate(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root: this test needs it to act as another user")
		}
		t.Skip("needs root to act as another local user (this never skips in CI)")
	}
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) missing: %v", err)
	}
	s := startServer(t, t.TempDir())
	publishBase(t, s, "lab")
	work := t.TempDir()
	// nobody must reach the mountpoint: the test's directories are 0700.
	for d := work; d != os.TempDir() && d != "/"; d = filepath.Dir(d) {
		os.Chmod(d, 0o755)
	}
	cache, mnt := filepath.Join(work, "cache"), filepath.Join(work, "mnt")
	m := s.startMount(t, cache, mnt, "--allow-other")
	if err := writeSync(filepath.Join(mnt, "clones", "lab", "notes.txt"), []byte("private\n")); err != nil {
		t.Fatal(err)
	}
	if out, err := asNobody("head -c 16 " + filepath.Join(mnt, "templates", "base", "disk.vmx")); err != nil || !strings.Contains(out, "displayName") {
		t.Errorf("another user cannot read a template: %v\n%s", err, out)
	}
	for _, script := range []string{
		"cat " + filepath.Join(mnt, "clones", "lab", "notes.txt"),
		"ls " + filepath.Join(mnt, "clones"),
		"echo x > " + filepath.Join(mnt, "clones", "lab", "intruder.txt"),
	} {
		if out, err := asNobody(script); err == nil || !strings.Contains(out, "Permission denied") {
			t.Errorf("another user ran %q on a private clone: %v\n%s", script, err, out)
		}
	}
	if fi, err := os.Stat(filepath.Join(mnt, "clones")); err != nil || fi.Mode().Perm() != 0o500 {
		t.Errorf("clones directory: %v, %v; want 0500", fi.Mode(), err)
	}
	m.unmount()

	// Shared: the file's mode decides; writes are still the owner's.
	m = s.startMount(t, cache, mnt, "--allow-other", "--share-clones")
	if out, err := asNobody("cat " + filepath.Join(mnt, "clones", "lab", "notes.txt")); err != nil || out != "private\n" {
		t.Errorf("another user cannot read a 0644 file of a shared clone: %v\n%s", err, out)
	}
	if out, err := asNobody("echo x > " + filepath.Join(mnt, "clones", "lab", "intruder.txt")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("another user wrote into a shared clone: %v\n%s", err, out)
	}

	// Ownership sticks and the kernel checks it: a directory given to
	// nobody takes nobody's files, which stay nobody's after a remount;
	// nobody cannot give a file away, nor write the mounting user's.
	drop := filepath.Join(mnt, "clones", "lab", "drop")
	if err := os.Mkdir(drop, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Chown(drop, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if out, err := asNobody("echo mine > " + drop + "/n.txt && chmod 600 " + drop + "/n.txt"); err != nil {
		t.Errorf("nobody cannot write in a directory of theirs: %v\n%s", err, out)
	}
	if out, err := asNobody("chown 0 " + drop + "/n.txt"); err == nil || !strings.Contains(out, "not permitted") {
		t.Errorf("nobody gave a file to root: %v\n%s", err, out)
	}
	if out, err := asNobody("echo x >> " + filepath.Join(mnt, "clones", "lab", "notes.txt")); err == nil || !strings.Contains(out, "Permission denied") {
		t.Errorf("nobody appended to the mounting user's file: %v\n%s", err, out)
	}
	m.unmount()
	s.startMount(t, cache, mnt, "--allow-other", "--share-clones")
	if fi, err := os.Stat(filepath.Join(drop, "n.txt")); err != nil || fi.Sys().(*syscall.Stat_t).Uid != 65534 || fi.Mode().Perm() != 0o600 {
		t.Errorf("nobody's file after a remount: %v, %v; want nobody's, 0600", fi, err)
	} else if out, err := asNobody("cat " + drop + "/n.txt"); err != nil || out != "mine\n" {
		t.Errorf("nobody cannot read their file after a remount: %v\n%s", err, out)
	}
}
