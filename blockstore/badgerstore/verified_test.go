package badgerstore

import (
	"bytes"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// openVerifiedT opens the store in dir as a workstation's cache does.
func openVerifiedT(t *testing.T, dir string) *Store {
	t.Helper()
	cfg := testConfig(t)
	cfg.Volatile, cfg.DirectWrites, cfg.VerifiedPuts = true, true, true
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestVerifiedPutsKeepPlainWithCRC: a store with VerifiedPuts keeps a
// compressed or deferred frame decoded, with a CRC in its index entry, so
// that GetRun serves it from one read; a flipped bit in a pack still fails
// Get, GetFrame and GetRun.
func TestVerifiedPutsKeepPlainWithCRC(t *testing.T) {
	const size = blockstore.DefaultBlockSize
	dir := disktest.TempDir(t)
	s := openVerifiedT(t, dir)
	r := rand.New(rand.NewPCG(3, 3))
	plains := [][]byte{
		storetest.RandomBytes(r, size),       // raw
		storetest.CompressibleBytes(r, size), // zstd
		storetest.CompressibleBytes(r, size), // deferred
		storetest.RandomBytes(r, size),       // raw
	}
	blocks := []blockstore.Block{
		storetest.NewBlock(plains[0]),
		storetest.NewBlock(plains[1]),
		{ID: blockstore.Sum(plains[2]), Frame: blockstore.EncodeDeferred(nil, plains[2])},
		storetest.NewBlock(plains[3]),
	}
	if len(blocks[1].Frame) >= size/2 {
		t.Fatalf("the zstd block's frame is %d bytes: not compressed", len(blocks[1].Frame))
	}
	if err := s.Put(t.Context(), blocks...); err != nil {
		t.Fatal(err)
	}
	ids := make([]blockstore.ID, len(blocks))
	for i, b := range blocks {
		ids[i] = b.ID
		ref := refOf(t, s, b.ID)
		raw, n, err := blockstore.RawHeader(ref.header())
		if err != nil || !raw || blockstore.Deferred(ref.header()) || n != size || ref.n != size || !ref.hasSum {
			t.Errorf("block %d stored as raw=%v deferred=%v plain %d payload %d sum=%v (%v); want a raw %d-byte payload with a CRC",
				i, raw, blockstore.Deferred(ref.header()), n, ref.n, ref.hasSum, err, size)
		}
	}
	checkBlocks(t, s, blocks)
	dst := make([]byte, len(ids)*size)
	done := make([]bool, len(ids))
	if err := s.GetRun(t.Context(), ids, size, dst, done); err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		if !done[i] || !bytes.Equal(dst[i*size:(i+1)*size], plains[i]) {
			t.Errorf("GetRun block %d: done=%v, bytes equal=%v", i, done[i], bytes.Equal(dst[i*size:(i+1)*size], plains[i]))
		}
	}

	// One bit flipped on disk, in the block that arrived compressed.
	corruptInDB(t, s, ids[1])
	expectNoData(t, s, ids[1], blockstore.ErrCorrupt)
	clear(done)
	if err := s.GetRun(t.Context(), ids, size, dst, done); err != nil {
		t.Fatal(err)
	}
	if want := []bool{true, false, true, true}; !slices.Equal(done, want) {
		t.Errorf("GetRun after a bit flip: done %v, want %v", done, want)
	}
}

// TestVerifiedPutsReadOlderEntries: blocks a store put without
// VerifiedPuts (a cache from before it, or compressed frames) are read by
// their hash after the store is reopened with it, corruption included.
func TestVerifiedPutsReadOlderEntries(t *testing.T) {
	dir := disktest.TempDir(t)
	blocks := testBlocks(21)
	s, err := Open(dir, testConfig(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), blocks...); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openVerifiedT(t, dir)
	for _, b := range blocks {
		if refOf(t, s, b.ID).hasSum {
			t.Fatalf("block %s has a CRC it was never given", b.ID.Short())
		}
	}
	checkBlocks(t, s, blocks)
	fresh := storetest.NewBlock(storetest.CompressibleBytes(rand.New(rand.NewPCG(5, 5)), 5000))
	if err := s.Put(t.Context(), fresh); err != nil {
		t.Fatal(err)
	}
	if !refOf(t, s, fresh.ID).hasSum {
		t.Error("a block put through VerifiedPuts has no CRC")
	}
	checkBlocks(t, s, []blockstore.Block{fresh})
	for _, b := range blocks[:2] {
		corruptInDB(t, s, b.ID)
		expectNoData(t, s, b.ID, blockstore.ErrCorrupt)
	}
}
