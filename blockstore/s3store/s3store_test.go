package s3store

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/minio/minio-go/v7"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

var bucketSeq atomic.Int64

// openT opens a store on a new bucket of srv, its index in a new
// badgerstore; cfg's zero fields take the defaults.
func openT(t testing.TB, srv *s3test.Server, cfg Config) *Store {
	t.Helper()
	return openAt(t, srv, fmt.Sprintf("dvfs-test-%d", bucketSeq.Add(1)), disktest.TempDir(t), cfg)
}

// openAt opens a store on bucket, its index in the badgerstore in
// metaDir, and closes it when the test ends.
func openAt(t testing.TB, srv *s3test.Server, bucket, metaDir string, cfg Config) *Store {
	t.Helper()
	meta, err := badgerstore.Open(metaDir, badgerstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Endpoint = srv.Endpoint
	cfg.AccessKey, cfg.SecretKey, cfg.Region = s3test.AccessKey, s3test.SecretKey, s3test.Region
	cfg.Bucket = bucket
	cfg.CreateBucket = true
	cfg.Meta = meta
	s, err := Open(context.Background(), cfg)
	if err != nil {
		meta.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	srv := s3test.Start(t)
	open := func(t *testing.T) storetest.Store { return openT(t, srv, Config{}) }
	storetest.Run(t, open, storetest.Options{Corrupt: corruptInPack})
}

// corruptInPack flips the last bit of id's frame in its pack object, as
// a bit flip in the object store would.
func corruptInPack(t *testing.T, st storetest.Store, id blockstore.ID) {
	s := st.(*Store)
	ctx := t.Context()
	e, _, err := s.lookup(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	name := s.objectName(e.pack)
	obj, err := s.client.GetObject(ctx, s.cfg.Bucket, name, minio.GetObjectOptions{})
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(obj)
	obj.Close()
	if err != nil {
		t.Fatal(err)
	}
	body[e.off+e.n-1] ^= 1
	if _, err := s.client.PutObject(ctx, s.cfg.Bucket, name, bytes.NewReader(body), int64(len(body)), minio.PutObjectOptions{}); err != nil {
		t.Fatal(err)
	}
}

// counter is an http.RoundTripper that counts requests by method.
type counter struct {
	next http.RoundTripper
	mu   sync.Mutex
	n    map[string]int
}

func newCounter() *counter { return &counter{next: http.DefaultTransport, n: map[string]int{}} }

func (c *counter) RoundTrip(r *http.Request) (*http.Response, error) {
	c.mu.Lock()
	c.n[r.Method]++
	c.mu.Unlock()
	return c.next.RoundTrip(r)
}

func (c *counter) take() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := c.n
	c.n = map[string]int{}
	return n
}

// TestRequestCounts publishes blocks in batches as a publish does and reads
// them back, counting the object store's requests: one PUT per pack, one
// GET per block read.
func TestRequestCounts(t *testing.T) {
	srv := s3test.Start(t)
	cnt := newCounter()
	const packSize = 4 << 20
	s := openT(t, srv, Config{Transport: cnt, PackSize: packSize})
	cnt.take() // the bucket's creation
	ctx := t.Context()
	const n, batch = 512, 128 // 32 MiB of 64 KiB blocks, in Puts of 8 MiB
	r := rand.New(rand.NewPCG(17, 17))
	var blocks []blockstore.Block
	var bytesPut int64
	for range n {
		// Incompressible, as most of a VM image's bytes are after its
		// own compression: the frames are the blocks' size.
		plain := storetest.RandomBytes(r, blockstore.DefaultBlockSize)
		blocks = append(blocks, storetest.NewBlock(plain))
		bytesPut += int64(len(plain))
	}
	for i := 0; i < n; i += batch {
		if err := s.Put(ctx, blocks[i:i+batch]...); err != nil {
			t.Fatal(err)
		}
	}
	put := cnt.take()
	var frames int64
	for _, b := range blocks {
		frames += int64(len(b.Frame))
	}
	packsPerBatch := len(splitSizes(blocks[:batch], packSize))
	if want := n / batch * packsPerBatch; put[http.MethodPut] != want || put[http.MethodGet] != 0 {
		t.Errorf("publishing %d blocks in %d Puts: %v requests, want %d PUTs and no GET", n, n/batch, put, want)
	}
	for _, b := range blocks {
		got, err := s.Get(ctx, b.ID, nil)
		if err != nil {
			t.Fatal(err)
		}
		if blockstore.Sum(got) != b.ID {
			t.Fatalf("Get %s returned other bytes", b.ID.Short())
		}
	}
	get := cnt.take()
	if get[http.MethodGet] != n || get[http.MethodPut] != 0 {
		t.Errorf("reading %d blocks: %v requests, want %d GETs", n, get, n)
	}
	// The same blocks read in order, as a sequential reader asks for them:
	// one GET for each stretch that lies back to back in a pack.
	const run = 256
	dst := make([]byte, run*blockstore.DefaultBlockSize)
	done := make([]bool, run)
	for i := 0; i < n; i += run {
		if err := s.GetRun(ctx, storetest.IDs(blocks[i:i+run]), blockstore.DefaultBlockSize, dst, done); err != nil {
			t.Fatal(err)
		}
		for k, ok := range done {
			if !ok {
				t.Fatalf("GetRun left block %d undone", i+k)
			}
		}
	}
	runs := cnt.take()
	if runs[http.MethodGet] != put[http.MethodPut] {
		t.Errorf("reading %d blocks in order with GetRun: %v requests, want a GET per pack (%d)", n, runs, put[http.MethodPut])
	}
	gib := float64(bytesPut) / (1 << 30)
	t.Logf("publish: %d PUT for %d MiB (%d MiB stored in packs of %d MiB): %.0f PUT per GiB published",
		put[http.MethodPut], bytesPut>>20, frames>>20, packSize>>20, float64(put[http.MethodPut])/gib)
	t.Logf("cold read: %d GET: %.0f GET per GiB read (one ranged GET per block)", get[http.MethodGet], float64(get[http.MethodGet])/gib)
	t.Logf("cold read in order (GetRun): %d GET: %.0f GET per GiB read (one ranged GET per run in a pack)", runs[http.MethodGet], float64(runs[http.MethodGet])/gib)
	t.Logf("with the default %d MiB packs and Puts of at least a pack: %.0f PUT per GiB published",
		DefaultPackSize>>20, math.Ceil(float64(1<<30)/float64(DefaultPackSize)*float64(frames)/float64(bytesPut)))
}

// splitSizes groups blocks as writePacks does.
func splitSizes(blocks []blockstore.Block, packSize int64) [][]blockstore.Block {
	var out [][]blockstore.Block
	for len(blocks) > 0 {
		size, n := int64(0), 0
		for n < len(blocks) && (n == 0 || size+int64(len(blocks[n].Frame)) <= packSize) {
			size += int64(len(blocks[n].Frame))
			n++
		}
		out = append(out, blocks[:n])
		blocks = blocks[n:]
	}
	return out
}
