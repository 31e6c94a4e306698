package gofuse_test

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// TestPOSIX runs fstest's table of POSIX behaviours through the kernel
// in a clone, in a template (the checks that only read) and in a
// directory of the local disk, the reference: every outcome must be the
// local disk's, except for the differences fstest.Differences lists.
func TestPOSIX(t *testing.T) {
	w, err := fstest.POSIXWorld(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tm := mountWorld(t, w, memstore.New(), t.TempDir(), gofuse.Options{}, func(*fs.Config) {})
	clone, template := tm.path("clones/"+fstest.POSIXName), tm.path("templates/"+fstest.POSIXName)
	local := t.TempDir()
	ref := filepath.Join(local, "tree")
	if err := fstest.WriteTree(ref, fstest.POSIXEntries()); err != nil {
		t.Fatal(err)
	}
	// The checks that change the clone's files run after those that
	// read them.
	checks := fstest.POSIX()
	slices.SortStableFunc(checks, func(a, b fstest.Check) int { return cmp.Compare(btoi(a.Changes), btoi(b.Changes)) })
	for i, c := range checks {
		t.Run(c.Name, func(t *testing.T) {
			var want string
			places := map[string]string{}
			switch {
			case c.Changes:
				tree := filepath.Join(local, fmt.Sprintf("tree%d", i))
				if err := fstest.WriteTree(tree, fstest.POSIXEntries()); err != nil {
					t.Fatal(err)
				}
				want = c.Run(tree)
				places["clone"] = clone
			case c.Writes:
				mk := func(parent string) string {
					d := filepath.Join(parent, fmt.Sprintf("posix%d", i))
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
					return d
				}
				want = c.Run(mk(local))
				places["clone"] = mk(clone)
			default:
				want = c.Run(ref)
				places["clone"] = clone
				places["template"] = template
			}
			for where, dir := range places {
				got := c.Run(dir)
				t.Logf("in a %s: %q", where, got)
				if got == want {
					continue
				}
				if why, ok := fstest.Differences[c.Name]; ok {
					t.Logf("in a %s: %q, on the local disk %q: a deliberate difference (%s)", where, got, want, why)
					continue
				}
				t.Errorf("in a %s: %q, on the local disk %q", where, got, want)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
