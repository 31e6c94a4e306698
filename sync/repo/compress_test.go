package repo

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// deferredBlocks returns n compressible blocks in deferred frames.
func deferredBlocks(seed uint64, n int) []blockstore.Block {
	r := rand.New(rand.NewPCG(seed, seed))
	var bs []blockstore.Block
	for range n {
		p := storetest.CompressibleBytes(r, blockstore.DefaultBlockSize)
		bs = append(bs, blockstore.Block{ID: blockstore.Sum(p), Frame: blockstore.EncodeDeferred(nil, p)})
	}
	return bs
}

// countDeferred returns how many of blocks the store keeps in deferred
// frames.
func countDeferred(t *testing.T, st *memstore.Store, blocks []blockstore.Block) int {
	t.Helper()
	n := 0
	for _, b := range blocks {
		f, err := st.GetFrame(t.Context(), b.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if blockstore.Deferred(f) {
			n++
		}
	}
	return n
}

// waitCompressed waits until none of blocks is deferred.
func waitCompressed(t *testing.T, st *memstore.Store, blocks []blockstore.Block) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for countDeferred(t, st, blocks) > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d of %d blocks still deferred after 30 s", countDeferred(t, st, blocks), len(blocks))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startLoop runs CompressLoop until the test ends.
func startLoop(t *testing.T, r *Repo, idle time.Duration) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.CompressLoop(ctx, idle) }()
	t.Cleanup(func() { cancel(); <-done })
}

// TestCompressLoopWaitsForIdle: blocks uploaded in deferred frames stay so
// while uploads keep coming, and are compressed once they stop.
func TestCompressLoopWaitsForIdle(t *testing.T) {
	r, st, _ := newRepo(t)
	startLoop(t, r, time.Second)
	blocks := deferredBlocks(1, 40)
	for _, b := range blocks {
		if err := r.PutBlocks(t.Context(), []blockstore.Block{b}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := countDeferred(t, st, blocks); n != len(blocks) {
		t.Fatalf("%d of %d blocks compressed while uploads went on", len(blocks)-n, len(blocks))
	}
	waitCompressed(t, st, blocks)
	for _, b := range blocks {
		if _, err := st.Get(t.Context(), b.ID, nil); err != nil {
			t.Fatal(err)
		}
	}
	// A second upload later is compressed too.
	more := deferredBlocks(2, 3)
	if err := r.PutBlocks(t.Context(), more); err != nil {
		t.Fatal(err)
	}
	waitCompressed(t, st, more)
}

// TestCompressLoopLeftovers: deferred blocks that an earlier run left are
// compressed when the loop starts, with no upload to wake it.
func TestCompressLoopLeftovers(t *testing.T) {
	r, st, _ := newRepo(t)
	blocks := deferredBlocks(3, 5)
	if err := st.Put(t.Context(), blocks...); err != nil {
		t.Fatal(err)
	}
	startLoop(t, r, time.Second)
	waitCompressed(t, st, blocks)
}

// TestFrameOfDeferredBlock: a block not yet compressed goes out compressed,
// and stays deferred in the store until CompressLoop gets to it.
func TestFrameOfDeferredBlock(t *testing.T) {
	r, st, _ := newRepo(t)
	blocks := deferredBlocks(4, 1)
	if err := r.PutBlocks(t.Context(), blocks); err != nil {
		t.Fatal(err)
	}
	frame, err := r.Frame(t.Context(), blocks[0].ID, []byte("pre"))
	if err != nil {
		t.Fatal(err)
	}
	if string(frame[:3]) != "pre" || blockstore.Deferred(frame[3:]) || len(frame)-3 >= len(blocks[0].Frame)/2 {
		t.Fatalf("Frame of a deferred block: %d bytes, deferred %v; want it compressed", len(frame)-3, blockstore.Deferred(frame[3:]))
	}
	if _, err := blockstore.Open(blocks[0].ID, frame[3:], nil); err != nil {
		t.Fatal(err)
	}
	if countDeferred(t, st, blocks) != 1 {
		t.Fatal("Frame changed the stored block")
	}
}
