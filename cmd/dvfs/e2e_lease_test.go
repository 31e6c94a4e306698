//go:build linux

package main

import (
	"path/filepath"
	"strings"
	"testing"
)

// Remounting the same cache takes the clone's lease back without the
// warning that another workstation held it: nobody did.
func TestRemountLeaseNoFalseWarning(t *testing.T) {
	s := startServer(t, t.TempDir())
	publishBase(t, s, "lab")
	work := t.TempDir()
	cache, mnt := filepath.Join(work, "cache"), filepath.Join(work, "mnt")
	for round := range 3 {
		m := s.startMount(t, cache, mnt)
		if err := writeSync(filepath.Join(mnt, "clones", "lab", "round.txt"), []byte{byte('a' + round)}); err != nil {
			t.Fatalf("round %d: write: %v", round, err)
		}
		m.unmount()
		if strings.Contains(m.log.String(), "held by another workstation") {
			t.Fatalf("round %d: remount warns of another workstation:\n%s", round, m.log)
		}
	}
	if out := s.dvfs("clone", "history", "lab"); strings.Contains(out, "lease:") {
		t.Errorf("the clone stays leased after clean unmounts:\n%s", out)
	}
}

// dvfs clone revert gives the lease back, whether it fails (unknown
// snapshot) or succeeds: the next mount writes the clone.
func TestRevertReleasesLease(t *testing.T) {
	s := startServer(t, t.TempDir())
	publishBase(t, s, "lab")
	s.dvfs("clone", "snapshot", "lab", "clean")
	out, err := s.try("clone", "revert", "lab", "nosuch")
	if err == nil || !strings.Contains(out, "nosuch") {
		t.Errorf("revert to an unknown snapshot: err %v:\n%s", err, out)
	}
	if h := s.dvfs("clone", "history", "lab"); strings.Contains(h, "lease:") {
		t.Errorf("a failed revert left the clone leased:\n%s", h)
	}
	s.dvfs("clone", "revert", "lab", "clean")
	if h := s.dvfs("clone", "history", "lab"); strings.Contains(h, "lease:") {
		t.Errorf("a revert left the clone leased:\n%s", h)
	}
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"))
	if err := writeSync(filepath.Join(m.dir, "clones", "lab", "after-revert.txt"), []byte("x\n")); err != nil {
		t.Errorf("writing the clone after the revert: %v\n%s", err, m.log)
	}
}
