package badgerstore

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/dgraph-io/badger/v4"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// TestSectorCVsKeptWithVerifiedPuts: a store with VerifiedPuts keeps the
// sector chaining values of every block whose length has them, whichever
// way the block arrived (raw, zstd, deferred, PutAbsent), checks them
// against the ID on the way out, and deletes them with the block; a store
// without VerifiedPuts keeps none.
func TestSectorCVsKeptWithVerifiedPuts(t *testing.T) {
	const size = blockstore.DefaultBlockSize
	ctx := t.Context()
	s := openVerifiedT(t, disktest.TempDir(t))
	r := rand.New(rand.NewPCG(5, 5))
	plains := [][]byte{storetest.RandomBytes(r, size), storetest.CompressibleBytes(r, size), storetest.CompressibleBytes(r, size),
		storetest.RandomBytes(r, size), storetest.RandomBytes(r, 3000)}
	blocks := []blockstore.Block{
		storetest.NewBlock(plains[0]),
		storetest.NewBlock(plains[1]),
		{ID: blockstore.Sum(plains[2]), Frame: blockstore.EncodeDeferred(nil, plains[2])},
		storetest.NewBlock(plains[3]),
		storetest.NewBlock(plains[4]), // a short last block: no CVs
	}
	if err := s.Put(ctx, blocks[:3]...); err != nil {
		t.Fatal(err)
	}
	if err := s.PutAbsent(ctx, blocks[3:]...); err != nil {
		t.Fatal(err)
	}
	for i, b := range blocks[:4] {
		cvs, err := s.SectorCVs(ctx, b.ID, nil)
		if err != nil {
			t.Fatalf("block %d: %v", i, err)
		}
		if !bytes.Equal(cvs, blockstore.AppendSectorCVs(nil, plains[i])) {
			t.Fatalf("block %d: chaining values differ from the block's", i)
		}
	}
	if _, err := s.SectorCVs(ctx, blocks[4].ID, nil); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("short block: %v, want ErrNotFound", err)
	}
	// Damaged values are refused, not returned.
	k := cvKey(blocks[3].ID)
	bad := blockstore.AppendSectorCVs(nil, plains[3])
	bad[40] ^= 1
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(k[:], bad) }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SectorCVs(ctx, blocks[3].ID, nil); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("damaged chaining values: %v, want ErrCorrupt", err)
	}
	if err := s.Delete(ctx, blocks[0].ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.SectorCVs(ctx, blocks[0].ID, nil); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("deleted block: %v, want ErrNotFound", err)
	}
	plain := openT(t, disktest.TempDir(t))
	if err := plain.Put(ctx, blocks[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := plain.SectorCVs(ctx, blocks[0].ID, nil); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("store without VerifiedPuts: %v, want ErrNotFound", err)
	}
}
