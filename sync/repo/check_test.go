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

// A block stored as a delta is held while its base is: CheckBlocks
// follows the chain and reports the base deleted from under it.
func TestCheckBlocksDelta(t *testing.T) {
	r, st, _ := newRepo(t)
	ctx := context.Background()
	base := block(1)
	m := put(t, r, "xp", base)
	next := append([]byte(nil), base...)
	next[600] = 9
	d := blockstore.Block{ID: blockstore.Sum(next), Frame: blockstore.AppendDeltaFrame(nil, blockstore.Sum(base), 512, 1<<1, next)}
	if err := r.PutDeltas(ctx, []blockstore.Block{d}); err != nil {
		t.Fatal(err)
	}
	m.Files[0].Blocks[0] = d.ID
	if _, err := r.Commit(ctx, m); err != nil {
		t.Fatal(err)
	}
	res, err := r.CheckBlocks(ctx)
	if err != nil || res.Named != 1 || res.Deltas != 1 || len(res.Missing) != 0 {
		t.Fatalf("check %+v, %v: want the delta named, none missing", res, err)
	}
	if err := st.Delete(ctx, blockstore.Sum(base)); err != nil {
		t.Fatal(err)
	}
	res, err = r.CheckBlocks(ctx)
	if err != nil || len(res.Missing) != 1 || res.Missing[0] != blockstore.Sum(base) {
		t.Fatalf("check %+v, %v: want the delta's base missing", res, err)
	}
}
