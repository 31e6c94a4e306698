package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/s3store"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// getCounter is an http.RoundTripper that counts the GETs it carries.
type getCounter struct {
	mu sync.Mutex
	n  int
}

func (c *getCounter) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.Method == http.MethodGet {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	return http.DefaultTransport.RoundTrip(r)
}

func (c *getCounter) take() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = 0
	return n
}

// TestFetchS3Runs fetches blocks from a server whose blocks are in an
// object store (s3store over versitygw): blocks stored together come in
// one ranged GET per run and window instead of one per block, in the
// order asked, along with those that are not in a run (deferred frames,
// a delta, a block of another pack, one asked twice); a block corrupted
// in its pack is not sent, and cuts the response where it stands.
func TestFetchS3Runs(t *testing.T) {
	srv := s3test.Start(t)
	meta, err := badgerstore.Open(disktest.TempDir(t), badgerstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cnt := &getCounter{}
	st, err := s3store.Open(context.Background(), s3store.Config{
		Endpoint: srv.Endpoint, AccessKey: s3test.AccessKey, SecretKey: s3test.SecretKey, Region: s3test.Region,
		Bucket: "fetch", CreateBucket: true, Meta: meta, Transport: cnt,
	})
	if err != nil {
		meta.Close()
		t.Fatal(err)
	}
	e := newEnvOn(t, st)
	t.Cleanup(func() {
		e.repo.Settle(context.Background())
		st.Close()
	})
	ctx := t.Context()
	r := rand.New(rand.NewPCG(3, 4))
	const n = 100 // more than a window of blocks
	var plains [][]byte
	var blocks []blockstore.Block
	for i := range n {
		p := storetest.RandomBytes(r, blockstore.DefaultBlockSize)
		if i%4 == 0 {
			p = storetest.CompressibleBytes(r, blockstore.DefaultBlockSize)
		}
		b := storetest.NewBlock(p)
		if i%10 == 3 { // as a sender whose link outran its compression
			b.Frame = blockstore.EncodeDeferred(nil, p)
		}
		plains, blocks = append(plains, p), append(blocks, b)
	}
	if err := st.Put(ctx, blocks...); err != nil {
		t.Fatal(err)
	}
	other := storetest.RandomBytes(r, blockstore.DefaultBlockSize) // a pack of its own
	if err := st.Put(ctx, storetest.NewBlock(other)); err != nil {
		t.Fatal(err)
	}
	deltaPlain, mask := changed(plains[1], 5, 77)
	deltaID := blockstore.Sum(deltaPlain)
	delta := blockstore.Block{ID: deltaID, Frame: blockstore.AppendDeltaFrame(nil, blocks[1].ID, sector, mask, deltaPlain)}
	if err := e.repo.PutDeltas(ctx, []blockstore.Block{delta}); err != nil {
		t.Fatal(err)
	}
	if ok, _ := st.Missing(ctx, []blockstore.ID{deltaID}); len(ok) != 1 {
		t.Fatal("the delta's block is in the block store: it would not test the per-block path")
	}

	// fetch fetches ids, checking each block's bytes and that no frame is
	// deferred or a delta, and returns the IDs in the order received.
	fetch := func(ids []blockstore.ID) ([]blockstore.ID, error) {
		var got []blockstore.ID
		err := e.admin.FetchFrames(ctx, ids, func(id blockstore.ID, frame, plain []byte) error {
			if blockstore.Deferred(frame) || blockstore.IsDelta(frame) {
				t.Errorf("block %s sent in a deferred or delta frame", id.Short())
			}
			if blockstore.Sum(plain) != id {
				t.Errorf("block %s: other bytes", id.Short())
			}
			got = append(got, id)
			return nil
		})
		return got, err
	}

	run := storetest.IDs(blocks)
	cnt.take()
	got, err := fetch(run)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, run) {
		t.Errorf("fetch of %d blocks stored in order: got %d blocks, or another order", len(run), len(got))
	}
	// Windows of 64 blocks, each one run in the pack: 2 GETs, not 100.
	if gets := cnt.take(); gets != 2 {
		t.Errorf("fetch of %d blocks stored in order: %d GETs, want 2 (a run per window)", len(run), gets)
	}

	mixed := []blockstore.ID{deltaID, blocks[7].ID, blocks[8].ID, blockstore.Sum(other), blocks[7].ID, blocks[50].ID, blocks[13].ID}
	mixed = append(mixed, run[20:90]...)
	got, err = fetch(mixed)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, mixed) {
		t.Errorf("fetch of %d blocks in and out of runs: got %d blocks, or another order", len(mixed), len(got))
	}

	// A frame corrupted in its pack: never sent; before the first byte it
	// is an error status, after it the response is cut.
	corruptInPack(t, srv.Dir, blocks[70].Frame)
	got, err = fetch(run[70:75])
	if err == nil || len(got) != 0 {
		t.Errorf("fetch starting with a corrupt block: %d blocks, %v; want an error and none", len(got), err)
	}
	// The client sees what the server's buffer had sent of the 10 before.
	got, err = fetch(run[60:80])
	if err == nil || len(got) > 10 || !slices.Equal(got, run[60:60+len(got)]) {
		t.Errorf("fetch with a corrupt block 11th: %d blocks, %v; want an error after at most the 10 before it", len(got), err)
	}
}

// corruptInPack flips the last bit of frame where it lies in a pack
// object under dir (versitygw's posix backend: a file per object).
func corruptInPack(t *testing.T, dir string, frame []byte) {
	t.Helper()
	found := 0
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if i := bytes.Index(b, frame); i >= 0 {
			b[i+len(frame)-1] ^= 1
			found++
			return os.WriteFile(p, b, 0o644)
		}
		return nil
	})
	if err != nil || found != 1 {
		t.Fatal(fmt.Errorf("corrupting a frame in %s: found in %d files: %v", dir, found, err))
	}
}
