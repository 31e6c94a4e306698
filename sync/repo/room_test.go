package repo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
)

// An upload the disk has no room for (Config.Room) is refused whole with
// ErrNoSpace, stores nothing and keeps its buffer (release is not
// called); once room returns the same upload is taken. Room is asked with
// the batch's frame bytes.
func TestUploadRefusedWithoutRoom(t *testing.T) {
	ctx := context.Background()
	_, key, _ := ed25519.GenerateKey(nil)
	st := memstore.New()
	var full atomic.Bool
	var asked atomic.Int64
	r, err := New(Config{Store: st, Key: key, Room: func(need int64) error {
		asked.Store(need)
		if full.Load() {
			return fmt.Errorf("%d bytes needed, none free", need)
		}
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Settle(context.Background()) })
	blocks := randomBlocks(7, 4, 64<<10)
	size := 0
	for _, b := range blocks {
		size += len(b.Frame)
	}

	full.Store(true)
	released := false
	for _, owner := range []string{"", "alice"} {
		err := r.AcceptFor(ctx, owner, blocks, func() { released = true })
		if !errors.Is(err, ErrNoSpace) {
			t.Fatalf("AcceptFor(%q) on a full disk = %v, want ErrNoSpace", owner, err)
		}
		t.Logf("refused: %v", err)
	}
	if released {
		t.Error("a refused upload's buffer was released")
	}
	if asked.Load() != int64(size) {
		t.Errorf("Room was asked for %d bytes, want the batch's %d", asked.Load(), size)
	}
	delta := blockstore.Block{ID: blocks[0].ID, Frame: blocks[0].Frame}
	if err := r.PutDeltasFor(ctx, "alice", []blockstore.Block{delta}); !errors.Is(err, ErrNoSpace) {
		t.Errorf("PutDeltasFor on a full disk = %v, want ErrNoSpace", err)
	}
	r.Settle(ctx)
	if missing, err := st.Missing(ctx, idsOf(blocks)); err != nil || len(missing) != len(blocks) {
		t.Fatalf("a refused upload stored blocks: %d of %d missing (%v)", len(missing), len(blocks), err)
	}

	full.Store(false)
	if err := r.AcceptFor(ctx, "alice", blocks, func() { released = true }); err != nil {
		t.Fatalf("AcceptFor once room returned: %v", err)
	}
	r.Settle(ctx)
	if missing, err := st.Missing(ctx, idsOf(blocks)); err != nil || len(missing) != 0 {
		t.Fatalf("after room returned: %d blocks missing (%v)", len(missing), err)
	}
	if !released {
		t.Error("the taken upload's buffer was never released")
	}
}

func idsOf(blocks []blockstore.Block) []blockstore.ID {
	ids := make([]blockstore.ID, len(blocks))
	for i, b := range blocks {
		ids[i] = b.ID
	}
	return ids
}
