package writeback

import (
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Status dates the oldest change not on the server: the first change
// since the last seal, carried by the seal to the pending generation
// until its commit; later changes do not move it.
func TestStatusUnsyncedSince(t *testing.T) {
	ov := &countingOverlay{}
	store := memstore.New()
	w := &Writeback{cfg: Config{Overlay: ov, Store: store}, log: slog.New(slog.DiscardHandler),
		outbox: &outbox{dir: disktest.TempDir(t)}, clones: map[string]*cloneWB{}}
	c := &cloneWB{w: w, name: "lab", st: state{Epoch: 1}, lease: api.Lease{Holder: "me", Epoch: 1, Expires: time.Now().Add(time.Hour)}}
	w.clones["lab"] = c
	ctx := context.Background()
	status := func() Status { return w.Status(ctx)[0] }
	change := func() time.Time {
		t.Helper()
		before := time.Now()
		if err := w.Writable("lab"); err != nil {
			t.Fatal(err)
		}
		ov.changes++
		return before
	}
	setPending := func(on bool) {
		t.Helper()
		op := blockstore.MetaOp{Key: key("lab", "pending")}
		if on {
			var err error
			if op, err = putOp(key("lab", "pending"), pending{Parent: 1, Blocks: 2}); err != nil {
				t.Fatal(err)
			}
		}
		c.pendingWritten() // as the loop's commits of the record do
		if err := store.CommitMeta(ctx, op); err != nil {
			t.Fatal(err)
		}
	}

	c.sealSaved(0)
	if s := status(); !s.Synced || !s.UnsyncedSince.IsZero() {
		t.Fatalf("nothing written: Synced %v, UnsyncedSince %v", s.Synced, s.UnsyncedSince)
	}
	t0 := change()
	first := status().UnsyncedSince
	if first.Before(t0) || first.After(time.Now()) {
		t.Fatalf("after a change at %v: UnsyncedSince %v", t0, first)
	}
	change()
	if s := status(); !s.UnsyncedSince.Equal(first) {
		t.Errorf("a later change moved UnsyncedSince from %v to %v", first, s.UnsyncedSince)
	}
	// Sealed: the changes wait in the pending generation.
	setPending(true)
	c.sealSaved(ov.changes)
	if s := status(); !s.Pending || s.Unsealed || !s.UnsyncedSince.Equal(first) {
		t.Errorf("sealed, pending: Pending %v Unsealed %v UnsyncedSince %v, want %v", s.Pending, s.Unsealed, s.UnsyncedSince, first)
	}
	t1 := change()
	if s := status(); !s.UnsyncedSince.Equal(first) {
		t.Errorf("a change while the seal is pending moved UnsyncedSince from %v to %v", first, s.UnsyncedSince)
	}
	// Committed: the oldest change off the server is the one after the seal.
	setPending(false)
	if s := status(); s.Pending || !s.Unsealed || s.UnsyncedSince.Before(t1) {
		t.Errorf("committed, a change since: Pending %v Unsealed %v UnsyncedSince %v, want at or after %v", s.Pending, s.Unsealed, s.UnsyncedSince, t1)
	}
	c.sealSaved(ov.changes)
	if s := status(); !s.Synced || !s.UnsyncedSince.IsZero() {
		t.Errorf("sealed with nothing pending: Synced %v, UnsyncedSince %v", s.Synced, s.UnsyncedSince)
	}
}

// pendingReads counts the reads of pending records.
type pendingReads struct {
	*memstore.Store
	n int
}

func (s *pendingReads) GetMeta(ctx context.Context, k string) ([]byte, error) {
	if strings.HasSuffix(k, "/pending") {
		s.n++
	}
	return s.Store.GetMeta(ctx, k)
}

// Status reads a clone's pending record once per change of it, not on
// every poll (dvfs umount polls), and still tells every change the loop
// commits.
func TestStatusReadsPendingOnChange(t *testing.T) {
	store := &pendingReads{Store: memstore.New()}
	w := &Writeback{cfg: Config{Overlay: &countingOverlay{}, Store: store}, log: slog.New(slog.DiscardHandler),
		outbox: &outbox{dir: disktest.TempDir(t)}, clones: map[string]*cloneWB{}}
	c := &cloneWB{w: w, name: "lab", st: state{Epoch: 1}, loaded: true}
	w.clones["lab"] = c
	ctx := context.Background()
	poll := func(want bool, blocks int) {
		t.Helper()
		for range 5 {
			if s := w.Status(ctx)[0]; s.Pending != want || s.PendingBlocks != blocks {
				t.Fatalf("Pending %v, %d blocks; want %v, %d", s.Pending, s.PendingBlocks, want, blocks)
			}
		}
	}
	poll(false, 0)
	op, err := putOp(key("lab", "pending"), pending{Parent: 1, Blocks: 7})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.saveState(ctx, op); err != nil {
		t.Fatal(err)
	}
	poll(true, 7)
	if err := c.saveState(ctx, blockstore.MetaOp{Key: key("lab", "pending")}); err != nil {
		t.Fatal(err)
	}
	poll(false, 0)
	if store.n != 3 {
		t.Errorf("15 polls over 3 states read the pending record %d times, want 3", store.n)
	}
}
