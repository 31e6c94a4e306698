//go:build linux

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// A clone removed on the server (dvfs clone rm) while a workstation has
// it mounted and is writing it: what the server lacks is saved as a new
// clone, the writeback stops instead of retrying a 404 forever, writes
// are refused with the reason, umount succeeds (nothing is off the
// server), and the next mount drops the clone without an error. Before,
// the 404 was "writeback will retry" every backoff for good, and a later
// mount could fail to load the clone's state ("base: not found").
func TestRemovedCloneWhileMounted(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	publishBase(t, s, "lab")
	work := t.TempDir()
	cache, mnt := filepath.Join(work, "cache"), filepath.Join(work, "mnt")
	m := s.startMount(t, cache, mnt, "--sync-interval", "1h")
	cl := filepath.Join(mnt, "clones", "lab")
	if err := writeSync(filepath.Join(cl, "a.txt"), []byte("synced before the removal\n")); err != nil {
		t.Fatal(err)
	}
	waitGeneration(t, s, "lab", 2)
	s.dvfs("clone", "rm", "lab")

	// Written after the removal: only this workstation has it.
	want := []byte("written after the removal\n")
	if err := writeSync(filepath.Join(cl, "b.txt"), want); err != nil {
		t.Fatalf("the write the removal was found by: %v", err)
	}
	saved := regexp.MustCompile(`clone removed on the server.*conflict_clone=(lab-conflict-\S+)`)
	if !m.log.waitFor(time.Minute, saved.MatchString) {
		t.Fatalf("the mount never saw the removal:\n%s", m.log)
	}
	conflict := saved.FindStringSubmatch(m.log.String())[1]
	exp := filepath.Join(t.TempDir(), "exp")
	s.dvfs("clone", "export", conflict, exp)
	for name, data := range map[string][]byte{"a.txt": []byte("synced before the removal\n"), "b.txt": want} {
		if got, err := os.ReadFile(filepath.Join(exp, name)); err != nil || string(got) != string(data) {
			t.Errorf("%s in %s: %q, %v; want %q", name, conflict, got, err, data)
		}
	}
	// Further writes are refused, and nothing retries.
	if err := os.WriteFile(filepath.Join(cl, "c.txt"), []byte("x"), 0o644); err == nil {
		t.Errorf("a write into the removed clone succeeded")
	}
	time.Sleep(3 * time.Second) // the writeback's first retries came after 1 s and 2 s
	if n := strings.Count(m.log.String(), "writeback will retry"); n > 0 {
		t.Errorf("the writeback retried a removed clone %d times:\n%s", n, m.log)
	}
	if st := s.statusOf(t, m); strings.Contains(st, "NOT SYNCED") {
		t.Errorf("status after the changes were saved:\n%s", st)
	}
	m.unmount()

	// The next mount drops the clone and shows the saved one.
	m2 := s.startMount(t, cache, mnt)
	if _, err := os.Stat(cl); !os.IsNotExist(err) {
		t.Errorf("the removed clone is still in the mount: %v", err)
	}
	if got, err := os.ReadFile(filepath.Join(mnt, "clones", conflict, "b.txt")); err != nil || string(got) != string(want) {
		t.Errorf("b.txt in the saved clone through the mount: %q, %v", got, err)
	}
	m2.unmount()
	for _, l := range []*syncBuffer{m.log, m2.log} {
		if strings.Contains(l.String(), "level=ERROR") {
			t.Errorf("a mount logged an error:\n%s", l)
		}
	}
	if n := strings.Count(m2.log.String(), "-conflict-"); n > 0 && strings.Contains(m2.log.String(), "saved as a new clone") {
		t.Errorf("the remount saved the changes a second time:\n%s", m2.log)
	}
}
