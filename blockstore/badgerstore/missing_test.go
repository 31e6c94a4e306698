package badgerstore

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// TestMissingMerge checks the sorted merge that answers long lists against
// a lookup per ID: on an empty store, then with some blocks present (runs
// of neighbours in the index and lone ones) among blocks never asked
// about, some deleted, holes and repeated IDs among those asked about, in
// the caller's order.
func TestMissingMerge(t *testing.T) {
	ctx := t.Context()
	s, err := Open(disktest.TempDir(t), Config{Volatile: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(5, 6))
	const n = 3000
	blocks := make([]blockstore.Block, n)
	for i := range blocks {
		plain := binary.LittleEndian.AppendUint64(nil, uint64(i)+1)
		blocks[i] = blockstore.Block{ID: blockstore.Sum(plain), Frame: blockstore.Encode(nil, plain)}
	}
	ask := make([]blockstore.ID, 0, n+100)
	for _, b := range blocks {
		ask = append(ask, b.ID)
	}
	for range 50 {
		ask = append(ask, blockstore.Hole, blocks[r.IntN(n)].ID)
	}
	r.Shuffle(len(ask), func(i, j int) { ask[i], ask[j] = ask[j], ask[i] })
	if len(ask) < mergeMin {
		t.Fatalf("asking about %d IDs does not reach the merge (%d)", len(ask), mergeMin)
	}
	compare := func(stage string) {
		t.Helper()
		got, err := s.Missing(ctx, ask)
		if err != nil {
			t.Fatal(err)
		}
		want, err := missingByLookup(s, ask)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Fatalf("%s: merge says %d missing, lookups %d (or a different order)", stage, len(got), len(want))
		}
		t.Logf("%s: %d of %d missing", stage, len(got), len(ask))
	}
	compare("empty store")
	var others []blockstore.Block // another template's
	for i := range 2 * n {
		plain := binary.BigEndian.AppendUint64(nil, uint64(i)+1)
		others = append(others, blockstore.Block{ID: blockstore.Sum(plain), Frame: blockstore.Encode(nil, plain)})
	}
	if err := s.Put(ctx, others...); err != nil {
		t.Fatal(err)
	}
	compare("other blocks only")
	var present []blockstore.Block
	for i, b := range blocks {
		// Every other block in the first third (lone ones), most of the
		// middle third (runs), none of the rest.
		if (i < n/3 && i%2 == 0) || (i >= n/3 && i < 2*n/3 && r.IntN(10) != 0) {
			present = append(present, b)
		}
	}
	if err := s.Put(ctx, present...); err != nil {
		t.Fatal(err)
	}
	compare("some present")
	var gone []blockstore.ID
	for i := 0; i < len(present); i += 7 {
		gone = append(gone, present[i].ID)
	}
	if err := s.Delete(ctx, gone...); err != nil {
		t.Fatal(err)
	}
	compare("some deleted")
	if err := s.Put(ctx, blocks...); err != nil {
		t.Fatal(err)
	}
	got, err := s.Missing(ctx, ask)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 0 {
		t.Fatalf("all present: %d missing", len(got))
	}
}

// missingByLookup is Missing by one lookup per ID, whatever the length.
func missingByLookup(s *Store, ids []blockstore.ID) ([]blockstore.ID, error) {
	absent := make([]bool, len(ids))
	err := s.db.View(func(txn *badger.Txn) error { return absentByLookup(context.Background(), txn, ids, absent) })
	var missing []blockstore.ID
	for i, id := range ids {
		if absent[i] {
			missing = append(missing, id)
		}
	}
	return missing, err
}
