package writeback

import (
	"context"
	"log/slog"
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
