package s3store

import (
	"bytes"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// TestGetRun reads blocks put in order with one ranged GET per stretch
// that lies back to back in a pack, compressed or not; holes, absent
// blocks, blocks of another size and tampered ones are left undone.
func TestGetRun(t *testing.T) {
	srv := s3test.Start(t)
	cnt := newCounter()
	s := openT(t, srv, Config{Transport: cnt})
	ctx := t.Context()
	r := rand.New(rand.NewPCG(7, 8))
	const size = blockstore.DefaultBlockSize
	var plains [][]byte
	var blocks []blockstore.Block
	for i := range 40 {
		p := storetest.RandomBytes(r, size)
		if i%3 == 0 {
			p = storetest.CompressibleBytes(r, size)
		}
		plains = append(plains, p)
		blocks = append(blocks, storetest.NewBlock(p))
	}
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
