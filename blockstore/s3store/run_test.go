package s3store

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// runBlocks makes 40 blocks of the default size, random or (a third of
// them) compressible, and returns their bytes and blocks.
func runBlocks(r *rand.Rand) (plains [][]byte, blocks []blockstore.Block) {
	for i := range 40 {
		p := storetest.RandomBytes(r, blockstore.DefaultBlockSize)
		if i%3 == 0 {
			p = storetest.CompressibleBytes(r, blockstore.DefaultBlockSize)
		}
		plains = append(plains, p)
		blocks = append(blocks, storetest.NewBlock(p))
	}
	return plains, blocks
}

// TestGetRun reads blocks put in order with one ranged GET per stretch
// that lies back to back in a pack, compressed or not; holes, absent
// blocks, blocks of another size and tampered ones are left undone.
func TestGetRun(t *testing.T) {
	srv := s3test.Start(t)
	cnt := newCounter()
	s := openT(t, srv, Config{Transport: cnt})
	ctx := t.Context()
	const size = blockstore.DefaultBlockSize
	r := rand.New(rand.NewPCG(7, 8))
	plains, blocks := runBlocks(r)
	short := storetest.NewBlock([]byte("short"))
	if err := s.Put(ctx, append(blocks, short)...); err != nil {
		t.Fatal(err)
	}
	corruptInPack(t, s, blocks[30].ID)
	absent := storetest.NewBlock(storetest.RandomBytes(r, size))
	ids := storetest.IDs(blocks[:20])                       // one run
	ids = append(ids, blockstore.Hole, absent.ID, short.ID) // undone, breaking the run
	ids = append(ids, storetest.IDs(blocks[20:])...)        // a second run, one block tampered
	dst := make([]byte, len(ids)*size)
	done := make([]bool, len(ids))
	cnt.take()
	if err := s.GetRun(ctx, ids, size, dst, done); err != nil {
		t.Fatal(err)
	}
	if n := cnt.take(); n[http.MethodGet] != 2 {
		t.Errorf("GetRun of two runs: %v requests, want 2 GETs", n)
	}
	for i, id := range ids {
		want := -1
		for k, b := range blocks {
			if b.ID == id && k != 30 {
				want = k
			}
		}
		if done[i] != (want >= 0) {
			t.Errorf("block %d of the run: done = %v, want %v", i, done[i], want >= 0)
		}
		if want >= 0 && !bytes.Equal(dst[i*size:(i+1)*size], plains[want]) {
			t.Errorf("block %d of the run: other bytes", i)
		}
	}
}

// TestGetFrameRun reads the frames of blocks put in order with one ranged
// GET per stretch that lies back to back in a pack, whatever their size;
// holes, absent blocks and a frame corrupted in its pack get no call.
func TestGetFrameRun(t *testing.T) {
	srv := s3test.Start(t)
	cnt := newCounter()
	s := openT(t, srv, Config{Transport: cnt})
	ctx := t.Context()
	r := rand.New(rand.NewPCG(9, 10))
	const size = blockstore.DefaultBlockSize
	_, blocks := runBlocks(r)
	short := storetest.NewBlock([]byte("short"))
	if err := s.Put(ctx, append(blocks, short)...); err != nil {
		t.Fatal(err)
	}
	other := storetest.NewBlock(storetest.RandomBytes(r, size)) // in a pack of its own
	if err := s.Put(ctx, other); err != nil {
		t.Fatal(err)
	}
	corruptInPack(t, s, blocks[30].ID)
	absent := storetest.NewBlock(storetest.RandomBytes(r, size))
	ids := storetest.IDs(blocks[:20])                   // one run
	ids = append(ids, blockstore.Hole, absent.ID)       // no call, breaking the run
	ids = append(ids, storetest.IDs(blocks[20:])...)    // a second run, one block corrupt,
	ids = append(ids, short.ID, other.ID, blocks[3].ID) // ending with the short block; then two GETs
	want := map[int][]byte{}
	for i, id := range ids {
		for k, b := range append(blocks, short, other) {
			if b.ID == id && k != 30 {
				want[i] = b.Frame
			}
		}
	}
	cnt.take()
	got := map[int][]byte{}
	last := -1
	err := s.GetFrameRun(ctx, ids, func(i int, frame []byte) error {
		if i <= last {
			t.Errorf("block %d after block %d", i, last)
		}
		last = i
		got[i] = append([]byte(nil), frame...)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n := cnt.take(); n[http.MethodGet] != 4 || len(n) != 1 {
		t.Errorf("GetFrameRun of four runs: %v requests, want 4 GETs", n)
	}
	for i := range ids {
		if !bytes.Equal(got[i], want[i]) {
			t.Errorf("block %d: frame of %d bytes, want %d bytes (stored frame, or no call)", i, len(got[i]), len(want[i]))
		}
	}
	if _, err := s.GetFrame(ctx, blocks[30].ID, nil); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Errorf("GetFrame of the corrupt block: %v, want ErrCorrupt", err)
	}
	stop := errors.New("stop")
	calls := 0
	err = s.GetFrameRun(ctx, ids, func(int, []byte) error { calls++; return stop })
	if !errors.Is(err, stop) || calls != 1 {
		t.Errorf("GetFrameRun whose fn fails: %v after %d calls, want fn's error after 1", err, calls)
	}
}
