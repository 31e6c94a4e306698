package badgerstore

import (
	"context"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// absentFirst stores through PutAbsent what Missing reports absent, as a
// multicast receiver does, so that the conformance suite checks every
// promise of Put on PutAbsent's path.
type absentFirst struct{ *Store }

func (a absentFirst) Put(ctx context.Context, blocks ...blockstore.Block) error {
	ids := make([]blockstore.ID, len(blocks))
	for i, b := range blocks {
		ids[i] = b.ID
	}
	missing, err := a.Missing(ctx, ids)
	if err != nil {
		return err
	}
	want := make(map[blockstore.ID]bool, len(missing))
	for _, id := range missing {
		want[id] = true
	}
	var todo []blockstore.Block
	for _, b := range blocks {
		if want[b.ID] {
			todo = append(todo, b)
			delete(want, b.ID) // a block twice in one call is stored once
		}
	}
	return a.PutAbsent(ctx, todo...)
}

func TestConformancePutAbsent(t *testing.T) {
	runConformanceVia(t, func(s *Store) storetest.Store { return absentFirst{s} },
		func(st storetest.Store) *Store { return st.(absentFirst).Store })
}

// runConformanceVia runs the conformance suite, writing through the page
// cache and with O_DIRECT, on stores seen through wrap (unwrap undoes it).
func runConformanceVia(t *testing.T, wrap func(*Store) storetest.Store, unwrap func(storetest.Store) *Store) {
	for _, direct := range []bool{false, true} {
		name := "buffered"
		if direct {
			name = "direct"
		}
		t.Run(name, func(t *testing.T) {
			open := func(t *testing.T) storetest.Store {
				cfg := testConfig(t)
				cfg.DirectWrites = direct
				s, err := Open(disktest.TempDir(t), cfg)
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { s.Close() })
				return wrap(s)
			}
			corrupt := func(t *testing.T, st storetest.Store, id blockstore.ID) {
				corruptInDB(t, unwrap(st), id)
			}
			storetest.Run(t, open, storetest.Options{Corrupt: corrupt})
		})
	}
}

// TestPutAbsent checks what the conformance suite cannot: holes are
// skipped, blocks survive a reopen, and a block that was present after
// all stays readable, listed once and deletable.
func TestPutAbsent(t *testing.T) {
	ctx := context.Background()
	dir := disktest.TempDir(t)
	s, err := Open(dir, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	blocks := testBlocks(7)
	present := blocks[0]
	if err := s.Put(ctx, present); err != nil {
		t.Fatal(err)
	}
	hole := blockstore.Block{ID: blockstore.Hole}
	if err := s.PutAbsent(ctx, append([]blockstore.Block{hole}, blocks...)...); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAbsent(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openT(t, dir)
	for _, b := range blocks {
		want, err := blockstore.Open(b.ID, b.Frame, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.Get(ctx, b.ID, nil)
		if err != nil || string(got) != string(want) {
			t.Fatalf("get %s after reopen: %d bytes, %v", b.ID.Short(), len(got), err)
		}
	}
	n := 0
	if err := s.Walk(ctx, func(id blockstore.ID) error {
		if id == present.ID {
			n++
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if n != 1 {
		t.Fatalf("the block stored twice is listed %d times", n)
	}
	if err := s.Delete(ctx, present.ID); err != nil {
		t.Fatal(err)
	}
	if m, err := s.Missing(ctx, []blockstore.ID{present.ID}); err != nil || len(m) != 1 {
		t.Fatalf("after delete: missing %v, %v", m, err)
	}
}
