package s3store

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/minio/minio-go/v7"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta/etcdtest"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// packHook is a server's transport that runs a function, once, at a GET
// of a whole pack object (Compact's read of a pack; Gets ask for a
// range): before the request is sent (before) or when its body has been
// read to the end (read); or before the PUT of a pack (put). The request
// itself goes to the real server.
type packHook struct {
	before, read, put atomic.Pointer[func()]
}

func (h *packHook) RoundTrip(r *http.Request) (*http.Response, error) {
	pack := strings.Contains(r.URL.Path, "/packs/")
	if pack && r.Method == http.MethodPut {
		if f := h.put.Swap(nil); f != nil {
			(*f)()
		}
	}
	whole := pack && r.Method == http.MethodGet && r.Header.Get("Range") == ""
	if whole {
		if f := h.before.Swap(nil); f != nil {
			(*f)()
		}
	}
	resp, err := http.DefaultTransport.RoundTrip(r)
	if err == nil && whole && resp.StatusCode == http.StatusOK {
		if f := h.read.Swap(nil); f != nil {
			resp.Body = &atEOF{ReadCloser: resp.Body, f: f}
		}
	}
	return resp, err
}

// atEOF runs f when its body has been read to the end, before the reader
// is told.
type atEOF struct {
	io.ReadCloser
	f    *func()
	once sync.Once
}

func (b *atEOF) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err == io.EOF {
		b.once.Do(*b.f)
	}
	return n, err
}

// sharedStores opens n stores over bucket of srv and the prefix of that
// name in the etcd cluster c, each with its own etcd client and transport, as
// n servers of one repository have.
func sharedStores(t *testing.T, c *etcdtest.Cluster, srv *s3test.Server, bucket string, n int, cfg Config) ([]*Store, []*packHook) {
	t.Helper()
	const maxTxnOps = 8192
	var stores []*Store
	var hooks []*packHook
	for range n {
		meta, err := etcdmeta.Open(t.Context(), etcdmeta.Config{Endpoints: c.Endpoints(), Prefix: bucket + "/", MaxTxnOps: maxTxnOps, MaxRequestBytes: 8 << 20})
		if err != nil {
			t.Fatal(err)
		}
		h := &packHook{}
		c := cfg
		c.Endpoint = srv.Endpoint
		c.AccessKey, c.SecretKey, c.Region = s3test.AccessKey, s3test.SecretKey, s3test.Region
		c.Bucket, c.CreateBucket = bucket, true
		c.Meta, c.MaxCommitOps, c.Transport = meta, maxTxnOps, h
		s, err := Open(t.Context(), c)
		if err != nil {
			meta.Close()
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores = append(stores, s)
		hooks = append(hooks, h)
	}
	return stores, hooks
}

// sparsePack puts n new small blocks (one pack) and deletes all but keep
// of them, so that the pack falls under CompactBelow; it returns the
// pack's ID and the blocks kept.
func sparsePack(t *testing.T, s *Store, r *rand.Rand, n, keep int) (packID, []blockstore.Block) {
	t.Helper()
	var bs []blockstore.Block
	for range n {
		bs = append(bs, storetest.NewBlock(storetest.RandomBytes(r, 1024)))
	}
	if err := s.Put(t.Context(), bs...); err != nil {
		t.Fatal(err)
	}
	e, _, err := s.lookup(t.Context(), bs[0].ID)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Delete(t.Context(), storetest.IDs(bs[keep:])...); err != nil {
		t.Fatal(err)
	}
	return e.pack, bs[:keep]
}

// sharedState is what the index and the bucket hold: each block's pack,
// the pack records, and the pack objects.
type sharedState struct {
	entries map[blockstore.ID]packID
	records map[packID]packRecord
	objects map[packID]bool
}

func readShared(t *testing.T, s *Store) sharedState {
	t.Helper()
	ctx := t.Context()
	st := sharedState{entries: map[blockstore.ID]packID{}, records: map[packID]packRecord{}, objects: map[packID]bool{}}
	if err := s.listEntries(ctx, func(id blockstore.ID, _ []byte, e entry) { st.entries[id] = e.pack }); err != nil {
		t.Fatal(err)
	}
	if err := s.listPackRecords(ctx, func(p packID, _ []byte, r packRecord) { st.records[p] = r }); err != nil {
		t.Fatal(err)
	}
	for o := range s.client.ListObjects(ctx, s.cfg.Bucket, minio.ListObjectsOptions{Prefix: s.cfg.Prefix + "packs/", Recursive: true}) {
		if o.Err != nil {
			t.Fatal(o.Err)
		}
		var p packID
		raw, _ := hex.DecodeString(strings.TrimPrefix(o.Key, s.cfg.Prefix+"packs/"))
		copy(p[:], raw)
		if s.objectName(p) != o.Key {
			t.Fatalf("object %s is not a pack's", o.Key)
		}
		st.objects[p] = true
	}
	return st
}

// garbage is the pack objects no entry points to.
func (st sharedState) garbage() int {
	used := map[packID]bool{}
	for _, p := range st.entries {
		used[p] = true
	}
	n := 0
	for p := range st.objects {
		if !used[p] {
			n++
		}
	}
	return n
}

// checkShared checks, through every store, that each block of live reads
// back verified (Get and GetFrame), that each of gone is missing, that
// the index holds live and nothing else, and that every entry points at
// a pack whose object and committed record exist.
func checkShared(t *testing.T, stores []*Store, live map[blockstore.ID]bool, gone []blockstore.ID) sharedState {
	t.Helper()
	ctx := t.Context()
	for i, s := range stores {
		for id := range live {
			got, err := s.Get(ctx, id, nil)
			if err != nil || blockstore.Sum(got) != id {
				t.Errorf("store %d: Get %s: %v", i, id.Short(), err)
			}
			frame, err := s.GetFrame(ctx, id, nil)
			if err != nil || blockstore.Verify(id, frame) != nil {
				t.Errorf("store %d: GetFrame %s: %v", i, id.Short(), err)
			}
		}
		for _, id := range gone {
			if _, err := s.Get(ctx, id, nil); !errors.Is(err, blockstore.ErrNotFound) {
				t.Errorf("store %d: Get of deleted %s: %v, want ErrNotFound", i, id.Short(), err)
			}
		}
	}
	st := readShared(t, stores[0])
	for id, p := range st.entries {
		if !live[id] {
			t.Errorf("index entry of %s, which is not live (deleted, and brought back)", id.Short())
		}
		if !st.objects[p] {
			t.Errorf("index entry of %s points at pack %s, whose object is gone", id.Short(), p)
		}
		if r, ok := st.records[p]; !ok || !r.committed {
			t.Errorf("index entry of %s points at pack %s, whose record is %+v (present: %v)", id.Short(), p, r, ok)
		}
	}
	if len(st.entries) != len(live) {
		t.Errorf("index has %d entries, want the %d live blocks", len(st.entries), len(live))
	}
	return st
}

// TestCompactShared: two servers (two Stores, each with its own etcd
// client) over one bucket and one etcd prefix compact at once, with Puts,
// Deletes and Gets going on: no block is lost, none deleted comes back,
// no entry points at a removed pack, and the losers' packs are collected
// by a later Compact. The interleavings that matter are forced first:
//
//   - both judge a pack doomed; A reads it, then B moves its blocks and
//     removes it and a block of it is deleted: A's moves lose their
//     condition, the deleted block stays deleted, A's new pack is garbage
//     a later Compact removes;
//   - B removes a pack just before A reads it: A's GET finds no object,
//     and A's Compact goes on without it.
func TestCompactShared(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{MaxTxnOps: 8192, MaxRequestBytes: 8 << 20})
	srv := s3test.Start(t)
	bucket := fmt.Sprintf("dvfs-shared-%d", bucketSeq.Add(1))
	// OrphanAge as short as can be: a pending pack of the other server,
	// Put or Compact in progress, looks orphaned.
	stores, hooks := sharedStores(t, c, srv, bucket, 2, Config{PackSize: minPackSize, OrphanAge: time.Nanosecond})
	a, b := stores[0], stores[1]
	ctx := t.Context()
	r := rand.New(rand.NewPCG(7, 8))
	live := map[blockstore.ID]bool{}
	var gone []blockstore.ID
	keepAll := func(bs []blockstore.Block) {
		for _, x := range bs {
			live[x.ID] = true
		}
	}

	// Both judge p doomed; B moves p's blocks, removes p and one block is
	// deleted after A has read p and before A commits its moves.
	p, kept := sparsePack(t, a, r, 10, 4)
	keepAll(kept)
	fired := false
	f := func() {
		fired = true
		if st, err := b.Compact(ctx); err != nil || st.Rewritten != 1 || st.Moved != 4 {
			t.Errorf("B's Compact while A reads the pack = %+v, %v; want it rewritten, 4 moved", st, err)
		}
		if err := b.Delete(ctx, kept[0].ID); err != nil {
			t.Error(err)
		}
		delete(live, kept[0].ID)
		gone = append(gone, kept[0].ID)
	}
	hooks[0].read.Store(&f)
	if st, err := a.Compact(ctx); err != nil || st.Rewritten != 1 {
		t.Fatalf("A's Compact = %+v, %v; want the pack judged doomed and rewritten", st, err)
	}
	if !fired {
		t.Fatal("A's Compact did not read the pack")
	}
	st := checkShared(t, stores, live, gone)
	if st.objects[p] || len(st.records) != len(st.objects) {
		t.Errorf("after both compacted pack %s: objects %v, records %v", p, st.objects, st.records)
	}
	if g := st.garbage(); g != 1 {
		t.Errorf("%d pack objects without entries after A lost every move, want 1 (A's new pack)", g)
	}

	// B removes p just before A reads it.
	p, kept = sparsePack(t, a, r, 10, 3)
	keepAll(kept)
	fired = false
	f = func() {
		fired = true
		if _, err := b.Compact(ctx); err != nil {
			t.Errorf("B's Compact just before A reads the pack: %v", err)
		}
	}
	hooks[0].before.Store(&f)
	if _, err := a.Compact(ctx); err != nil {
		t.Fatalf("A's Compact of a pack B removed before A read it: %v", err)
	}
	if !fired {
		t.Fatal("A's Compact did not read the pack")
	}
	st = checkShared(t, stores, live, gone)
	if st.objects[p] {
		t.Errorf("pack %s still there after both compacted it", p)
	}

	// B takes A's pack, recorded as pending and not yet written, for an
	// orphan and removes it: A's Put fails and leaves nothing behind, and
	// succeeds when tried again.
	var bs []blockstore.Block
	for range 5 {
		bs = append(bs, storetest.NewBlock(storetest.RandomBytes(r, 1024)))
	}
	fired = false
	f = func() {
		fired = true
		if st, err := b.Compact(ctx); err != nil || st.Orphans != 1 {
			t.Errorf("B's Compact while A writes its pack = %+v, %v; want it removed as an orphan", st, err)
		}
	}
	hooks[0].put.Store(&f)
	if err := a.Put(ctx, bs...); !errors.Is(err, errOrphaned) || !fired {
		t.Fatalf("A's Put of a pack B removed as an orphan: %v (B compacted: %v), want errOrphaned", err, fired)
	}
	st = checkShared(t, stores, live, append(slices.Clone(gone), storetest.IDs(bs)...))
	if g := st.garbage(); g != 0 || len(st.records) != len(st.objects) {
		t.Errorf("after A's Put failed: %d pack objects without entries, %d records for %d objects", g, len(st.records), len(st.objects))
	}
	if err := a.Put(ctx, bs...); err != nil {
		t.Fatal(err)
	}
	keepAll(bs)

	// A stages two rounds into one pack; the first's CommitStaged writes
	// and commits it with a share of its blocks under CompactBelow, and B
	// rewrites it away before the second's: that one fails, as its pack is
	// gone, and leaves no entry behind.
	var first, second []blockstore.Block
	for range 2 {
		first = append(first, storetest.NewBlock(storetest.RandomBytes(r, 1024)))
	}
	for range 6 {
		second = append(second, storetest.NewBlock(storetest.RandomBytes(r, 1024)))
	}
	st1, err := a.Stage(ctx, first...)
	if err != nil {
		t.Fatal(err)
	}
	st2, err := a.Stage(ctx, second...)
	if err != nil {
		t.Fatal(err)
	}
	if err := a.CommitStaged(ctx, []blockstore.Staged{st1}); err != nil {
		t.Fatal(err)
	}
	keepAll(first)
	if st, err := b.Compact(ctx); err != nil || st.Rewritten != 1 || st.Moved != len(first) {
		t.Fatalf("B's Compact between A's CommitStaged = %+v, %v; want the staged pack rewritten", st, err)
	}
	if err := a.CommitStaged(ctx, []blockstore.Staged{st2}); !errors.Is(err, errOrphaned) {
		t.Fatalf("A's CommitStaged into a pack B removed: %v, want errOrphaned", err)
	}
	st = checkShared(t, stores, live, append(slices.Clone(gone), storetest.IDs(second)...))
	if g := st.garbage(); g != 0 || len(st.records) != len(st.objects) {
		t.Errorf("after A's CommitStaged failed: %d pack objects without entries, %d records for %d objects", g, len(st.records), len(st.objects))
	}

	// Many rounds at random: a writer puts packs and deletes blocks of
	// earlier ones, through either store; after each Put both compact,
	// each at its own pace, while readers read blocks that stay live.
	const puts = 24
	var stable []blockstore.ID
	for id := range live {
		stable = append(stable, id)
	}
	var compactors, readers sync.WaitGroup
	var stop atomic.Bool
	var compactions, rewritten, moved, orphaned atomic.Int64
	var kick []chan struct{}
	for i, s := range stores {
		ch := make(chan struct{}, 1)
		kick = append(kick, ch)
		compactors.Go(func() {
			for range ch {
				st, err := s.Compact(ctx)
				if errors.Is(err, errOrphaned) {
					orphaned.Add(1)
				} else if err != nil {
					t.Errorf("store %d: Compact: %v", i, err)
				}
				compactions.Add(1)
				rewritten.Add(int64(st.Rewritten))
				moved.Add(int64(st.Moved))
			}
		})
		readers.Go(func() {
			for j := i; !stop.Load(); j++ {
				id := stable[j%len(stable)]
				if got, err := s.Get(ctx, id, nil); err != nil || blockstore.Sum(got) != id {
					t.Errorf("store %d: Get %s while compacting: %v", i, id.Short(), err)
					return
				}
				if frame, err := s.GetFrame(ctx, id, nil); err != nil || blockstore.Verify(id, frame) != nil {
					t.Errorf("store %d: GetFrame %s while compacting: %v", i, id.Short(), err)
					return
				}
			}
		})
	}
	wr := rand.New(rand.NewPCG(9, 10))
	var pool []blockstore.ID // live blocks the writer may delete
	for i := range puts {
		if t.Failed() {
			break
		}
		var bs []blockstore.Block
		for range 4 + wr.IntN(12) {
			bs = append(bs, storetest.NewBlock(storetest.RandomBytes(wr, 1024)))
		}
		err := stores[i%2].Put(ctx, bs...)
		for try := 0; errors.Is(err, errOrphaned) && try < 10; try++ {
			orphaned.Add(1)
			err = stores[i%2].Put(ctx, bs...)
		}
		if err != nil {
			t.Error(err)
			break
		}
		keepAll(bs)
		pool = append(pool, storetest.IDs(bs)...)
		wr.Shuffle(len(pool), func(i, j int) { pool[i], pool[j] = pool[j], pool[i] })
		drop := pool[:len(bs)*2/3]
		if err := stores[(i+1)%2].Delete(ctx, drop...); err != nil {
			t.Error(err)
			break
		}
		for _, id := range drop {
			delete(live, id)
		}
		gone = append(gone, drop...)
		pool = pool[len(drop):]
		for _, ch := range kick {
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}
	for _, ch := range kick {
		close(ch)
	}
	compactors.Wait()
	stop.Store(true)
	readers.Wait()
	t.Logf("%d Puts, %d compactions: %d packs rewritten, %d blocks moved; %d Puts and Compacts lost their pack to the other's orphan removal", puts, compactions.Load(), rewritten.Load(), moved.Load(), orphaned.Load())
	checkShared(t, stores, live, gone)

	// A later Compact, by a server that no Put runs against, leaves
	// only packs that entries point to.
	late, _ := sharedStores(t, c, srv, bucket, 1, Config{PackSize: minPackSize, OrphanAge: time.Nanosecond})
	for range 2 {
		if _, err := late[0].Compact(ctx); err != nil {
			t.Fatal(err)
		}
	}
	st = checkShared(t, append(stores, late...), live, gone)
	if g := st.garbage(); g != 0 || len(st.records) != len(st.objects) {
		t.Errorf("after a later Compact: %d pack objects without entries, %d records for %d objects", g, len(st.records), len(st.objects))
	}
}
