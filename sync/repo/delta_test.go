package repo

import (
	"context"
	"errors"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

func TestPutDeltas(t *testing.T) {
	r, st, _ := newRepo(t)
	ctx := context.Background()
	base := block(1)
	put(t, r, "xp", base)
	next := append([]byte(nil), base...)
	next[600] = 9
	d := blockstore.Block{ID: blockstore.Sum(next), Frame: blockstore.AppendDeltaFrame(nil, blockstore.Sum(base), 512, 1<<1, next)}

	// A delta frame is never a whole block.
	if err := r.PutBlocks(ctx, []blockstore.Block{d}); !errors.Is(err, blockstore.ErrNeedsBase) {
		t.Fatalf("PutBlocks of a delta frame: %v", err)
	}
	if err := r.PutDeltas(ctx, []blockstore.Block{d}); err != nil {
		t.Fatal(err)
	}
	if m, _ := r.Missing(ctx, []blockstore.ID{d.ID}); len(m) != 0 {
		t.Fatal("the delta counts as missing")
	}
	frame, err := r.Frame(ctx, d.ID, nil)
	if err != nil || blockstore.IsDelta(frame) {
		t.Fatalf("Frame of a delta-stored block: delta %v, %v", blockstore.IsDelta(frame), err)
	}
	if _, err := blockstore.Open(d.ID, frame, nil); err != nil {
		t.Fatal(err)
	}

	// A damaged stored delta is the server's fault: an error, never
	// another block's bytes, and not a refusal of the client's delta.
	if err := st.CommitMeta(ctx, blockstore.MetaOp{Key: deltaFrameKey(d.ID), Value: []byte{3, 1}}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Frame(ctx, d.ID, nil); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("Frame of a damaged delta: %v", err)
	}
	next2 := append([]byte(nil), next...)
	next2[0] = 7
	d2 := blockstore.Block{ID: blockstore.Sum(next2), Frame: blockstore.AppendDeltaFrame(nil, d.ID, 512, 1, next2)}
	if err := r.PutDeltas(ctx, []blockstore.Block{d2}); err == nil || errors.Is(err, api.ErrDeltaRefused) || errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("delta on a damaged stored base: %v, want a server error", err)
	}
}
