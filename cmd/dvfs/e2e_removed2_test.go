//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// A clone removed after a clean unmount ("synced") is dropped at the next
// mount: no conflict clone, no error, round after round on one cache (a
// probe of d6f4db3 saw about one removal in 35 come back as
// NAME-conflict-TIME, after which every mount failed to reconcile it;
// DVFS_REMOVE_ROUNDS runs more rounds).
func TestRemovedAfterCleanUnmount(t *testing.T) {
	t.Parallel()
	rounds := 8
	if n, err := strconv.Atoi(os.Getenv("DVFS_REMOVE_ROUNDS")); err == nil {
		rounds = n
	}
	s := startServer(t, t.TempDir())
	publishBase(t, s, "seed")
	work := t.TempDir()
	cache, mnt := filepath.Join(work, "cache"), filepath.Join(work, "mnt")
	for i := range rounds {
		name := fmt.Sprintf("c%d", i)
		s.dvfs("clone", "create", "--template", "base", name)
		m := s.startMount(t, cache, mnt)
		if err := writeSync(filepath.Join(mnt, "clones", name, "f.txt"), []byte(name)); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
		m.unmount()
		s.dvfs("clone", "rm", name)
		m2 := s.startMount(t, cache, mnt)
		m2.unmount()
		for _, l := range []string{m.log.String(), m2.log.String()} {
			if strings.Contains(l, "level=ERROR") || strings.Contains(l, "conflict") {
				t.Fatalf("round %d:\n%s", i, l)
			}
		}
		if out := s.dvfs("clone", "list"); strings.Contains(out, "conflict") {
			t.Fatalf("round %d: a conflict clone appeared:\n%s", i, out)
		}
	}
}
