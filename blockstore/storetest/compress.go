package storetest

import (
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
)

// deferredBlock is a block in a deferred frame (EncodeDeferred), as a
// client on a fast link uploads it.
func deferredBlock(plain []byte) blockstore.Block {
	return blockstore.Block{ID: blockstore.Sum(plain), Frame: blockstore.EncodeDeferred(nil, plain)}
}

// openCompressor opens a store as s.open does and returns it as a
// blockstore.Compressor too, or false (and logs why the subtest has nothing
// to check) if it is not one.
func (s *suite) openCompressor(t *testing.T) (Store, blockstore.Compressor, bool) {
	st := s.open(t)
	c, ok := st.(blockstore.Compressor)
	if !ok {
		t.Logf("%T does not compress deferred frames: nothing to check", st)
	}
	if s.opts.Plain {
		t.Log("the store keeps blocks plain: nothing is left to compress")
		ok = false
	}
	return st, c, ok
}

// CompressAll calls c.CompressDeferred until none is left and returns how
// many blocks it replaced.
func CompressAll(t *testing.T, c blockstore.Compressor, perCall int) int {
	t.Helper()
	total := 0
	for {
		n, err := c.CompressDeferred(t.Context(), perCall)
		if err != nil {
			t.Fatalf("CompressDeferred: %v", err)
		}
		if n == 0 {
			return total
		}
		total += n
	}
}

// testCompressDeferred: deferred blocks read like any other; CompressDeferred
// replaces them by encoded frames (zstd where it helps), a few per call,
// until none is left; the bytes never change.
func (s *suite) testCompressDeferred(t *testing.T) {
	st, c, ok := s.openCompressor(t)
	if !ok {
		return
	}
	ctx := t.Context()
	r := rng(t)
	compressible := CompressibleBytes(r, blockstore.DefaultBlockSize)
	plains := [][]byte{compressible, RandomBytes(r, blockstore.DefaultBlockSize), CompressibleBytes(r, 777)}
	var blocks []blockstore.Block
	for _, p := range plains {
		blocks = append(blocks, deferredBlock(p))
	}
	normal := NewBlock(CompressibleBytes(r, 5000))
	put(t, st, append(blocks, normal)...)
	for i, b := range blocks {
		checkGet(t, st, b.ID, plains[i])
		frame, err := st.GetFrame(ctx, b.ID, nil)
		if err != nil || !blockstore.Deferred(frame) {
			t.Fatalf("GetFrame of a deferred block before compression: deferred %v, %v", blockstore.Deferred(frame), err)
		}
	}

	total := 0
	for _, max := range []int{2, 10} {
		n, err := c.CompressDeferred(ctx, max)
		if err != nil {
			t.Fatalf("CompressDeferred(%d): %v", max, err)
		}
		if n > max {
			t.Fatalf("CompressDeferred(%d) = %d", max, n)
		}
		total += n
	}
	if total != len(blocks) {
		t.Fatalf("CompressDeferred replaced %d blocks in two calls, want %d", total, len(blocks))
	}
	if n, err := c.CompressDeferred(ctx, 10); n != 0 || err != nil {
		t.Fatalf("CompressDeferred with none left = %d, %v", n, err)
	}
	for i, b := range blocks {
		checkGet(t, st, b.ID, plains[i])
		frame, err := st.GetFrame(ctx, b.ID, nil)
		if err != nil || blockstore.Deferred(frame) {
			t.Fatalf("GetFrame after compression: deferred %v, %v", blockstore.Deferred(frame), err)
		}
	}
	frame, _ := st.GetFrame(ctx, blocks[0].ID, nil)
	if len(frame) >= len(compressible)/2 {
		t.Errorf("compressible block stored in %d bytes after compression, plain %d", len(frame), len(compressible))
	}
	checkGet(t, st, normal.ID, mustDecode(t, normal))

	// Putting the deferred frame again is a no-op, as for any present block.
	put(t, st, blocks[0])
	if frame, _ := st.GetFrame(ctx, blocks[0].ID, nil); blockstore.Deferred(frame) {
		t.Error("a second Put of a deferred frame replaced the compressed one")
	}
}

// testCompressDeferredConcurrent: readers never see an error, nor other
// bytes, while blocks are compressed under them, and a block deleted
// meanwhile stays deleted.
func (s *suite) testCompressDeferredConcurrent(t *testing.T) {
	st, c, ok := s.openCompressor(t)
	if !ok {
		return
	}
	ctx := t.Context()
	r := rng(t)
	var blocks []blockstore.Block
	for range 32 {
		blocks = append(blocks, deferredBlock(CompressibleBytes(r, blockstore.DefaultBlockSize)))
	}
	put(t, st, blocks...)
	doomed := map[blockstore.ID]bool{}
	for _, b := range blocks[:8] {
		doomed[b.ID] = true
	}

	var stop atomic.Bool
	var wg sync.WaitGroup
	for w := range 3 {
		wg.Go(func() {
			var buf []byte
			for i := w; !stop.Load(); i++ {
				b := blocks[i%len(blocks)]
				var err error
				if i%2 == 0 {
					buf, err = st.Get(ctx, b.ID, buf[:0])
					if err == nil && blockstore.Sum(buf) != b.ID {
						t.Errorf("Get %s returned other bytes", b.ID.Short())
						return
					}
				} else {
					buf, err = st.GetFrame(ctx, b.ID, buf[:0])
				}
				if errors.Is(err, blockstore.ErrNotFound) && doomed[b.ID] {
					continue
				}
				if err != nil {
					t.Errorf("read while compressing: %v", err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for _, b := range blocks[:8] {
			if err := st.Delete(ctx, b.ID); err != nil {
				t.Error(err)
			}
		}
	})
	CompressAll(t, c, 3)
	stop.Store(true)
	wg.Wait()
	missing, err := st.Missing(ctx, ids(blocks...))
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) != len(doomed) {
		t.Fatalf("%d blocks missing after deleting %d while compressing", len(missing), len(doomed))
	}
	for _, b := range blocks[8:] {
		frame, err := st.GetFrame(ctx, b.ID, nil)
		if err != nil || blockstore.Deferred(frame) {
			t.Fatalf("GetFrame %s after compressing: deferred %v, %v", b.ID.Short(), blockstore.Deferred(frame), err)
		}
	}
}
