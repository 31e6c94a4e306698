package repo

import (
	"context"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
)

// CheckBlocks finds every block a kept manifest names, and reports the
// one deleted from under it.
func TestCheckBlocks(t *testing.T) {
	r, st, _ := newRepo(t)
	ctx := context.Background()
	if _, err := r.Commit(ctx, put(t, r, "xp", block(1), block(2), block(3))); err != nil {
		t.Fatal(err)
	}
	res, err := r.CheckBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Named != 3 || len(res.Missing) != 0 {
		t.Fatalf("check %+v, want 3 blocks named, none missing", res)
	}
	gone := blockstore.Sum(block(2))
	if err := st.Delete(ctx, gone); err != nil {
		t.Fatal(err)
	}
	res, err = r.CheckBlocks(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Missing) != 1 || res.Missing[0] != gone {
		t.Fatalf("check %+v, want block 2 missing", res)
	}
}
