package cache_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	crand "crypto/rand"
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/cache"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
)

// remote is a real server over HTTP, with its store exposed for faults.
type remote struct {
	store  *memstore.Store
	server *server.Server
	client *client.Client
	ids    []blockstore.ID
	plains [][]byte
}

func newRemote(t *testing.T, blocks int) *remote {
	t.Helper()
	return newRemoteWith(t, blocks, server.Limits{}, false)
}

// newRemoteWith is newRemote with the server's limits set, and with blocks
// of random bytes (frames as large as the blocks) when random is set.
func newRemoteWith(t *testing.T, blocks int, limits server.Limits, random bool) *remote {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	st := memstore.New()
	r, _ := repo.New(repo.Config{Store: st, Key: key})
	dir := disktest.TempDir(t)
	server.EnsureAdminToken(context.Background(), r, dir)
	tok, _ := os.ReadFile(filepath.Join(dir, server.AdminTokenFile))
	h := server.New(server.Config{Repo: r, Limits: limits})
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Server: srv.URL, Token: strings.TrimSpace(string(tok))})
	if err != nil {
		t.Fatal(err)
	}
	rm := &remote{store: st, server: h, client: c}
	var batch []byte
	for i := range blocks {
		p := bytes.Repeat([]byte(fmt.Sprintf("block %d ", i)), 10000)[:64<<10]
		if random {
			p = make([]byte, 64<<10)
			crand.Read(p)
		}
		id := blockstore.Sum(p)
		rm.ids, rm.plains = append(rm.ids, id), append(rm.plains, p)
		batch = api.AppendBlock(batch, id, blockstore.Encode(nil, p))
	}
	if err := c.Upload(context.Background(), batch); err != nil {
		t.Fatal(err)
	}
	// The server stores what it took in the background: present once
	// settled (as before a commit that names the blocks).
	if err := r.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
	return rm
}

func TestMissFetchesThenHits(t *testing.T) {
	rm := newRemote(t, 4)
	local := memstore.New()
	c, err := cache.New(context.Background(), cache.Config{Store: local, Remote: rm.client})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for round := range 2 {
		for i, id := range rm.ids {
			got, err := c.ReadBlock(ctx, id, nil)
			if err != nil || !bytes.Equal(got, rm.plains[i]) {
				t.Fatalf("round %d block %d: %v", round, i, err)
			}
		}
	}
	st := c.Stats()
	if st.Misses != 4 || st.Hits != 4 || st.Fetched != 4 {
		t.Fatalf("stats %+v, want 4 misses then 4 hits", st)
	}
}

func TestCorruptLocalBlockIsFetchedAgain(t *testing.T) {
	rm := newRemote(t, 1)
	local := memstore.New()
	c, _ := cache.New(context.Background(), cache.Config{Store: local, Remote: rm.client})
	defer c.Close()
	ctx := context.Background()
	if _, err := c.ReadBlock(ctx, rm.ids[0], nil); err != nil {
		t.Fatal(err)
	}
	local.Corrupt(rm.ids[0])
	got, err := c.ReadBlock(ctx, rm.ids[0], nil)
	if err != nil || !bytes.Equal(got, rm.plains[0]) {
		t.Fatalf("after local corruption: %v", err)
	}
	if c.Stats().Corrupt != 1 {
		t.Fatal("corruption not counted")
	}
}

// A block that is corrupt on the server is refused by the client and never
// enters the cache.
func TestCorruptRemoteBlockNeverCached(t *testing.T) {
	rm := newRemote(t, 1)
	rm.store.Corrupt(rm.ids[0])
	local := memstore.New()
	c, _ := cache.New(context.Background(), cache.Config{Store: local, Remote: rm.client})
	defer c.Close()
	_, err := c.ReadBlock(context.Background(), rm.ids[0], nil)
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("got %v, want a corruption error", err)
	}
	if missing, _ := local.Missing(context.Background(), rm.ids); len(missing) != 1 {
		t.Fatal("a corrupt block entered the cache")
	}
}

// TestLimitEvictsCleanBlocks: the limit holds, counting each block at its
// plain size (the server sends these compressed to ~100 bytes, and the
// workstation's store keeps them plain).
func TestLimitEvictsCleanBlocks(t *testing.T) {
	const limit = 5 * 64 << 10
	rm := newRemote(t, 40)
	local := memstore.New()
	c, _ := cache.New(context.Background(), cache.Config{Store: local, Remote: rm.client, Limit: limit})
	defer c.Close()
	ctx := context.Background()
	for i, id := range rm.ids {
		got, err := c.ReadBlock(ctx, id, nil)
		if err != nil || !bytes.Equal(got, rm.plains[i]) {
			t.Fatalf("block %d: %v", i, err)
		}
	}
	st := c.Stats()
	if st.Bytes > limit || st.Blocks > 5 || st.Evicted == 0 {
		t.Fatalf("stats %+v: want at most %d bytes (5 plain blocks) cached and evictions", st, limit)
	}
	missing, _ := local.Missing(ctx, rm.ids)
	if len(missing) != 40-st.Blocks {
		t.Fatalf("store holds %d blocks, cache counts %d", 40-len(missing), st.Blocks)
	}
}

func TestPrefetchFillsInBackground(t *testing.T) {
	rm := newRemote(t, 64)
	local := memstore.New()
	c, _ := cache.New(context.Background(), cache.Config{Store: local, Remote: rm.client})
	defer c.Close()
	c.Prefetch(rm.ids)
	deadline := time.Now().Add(10 * time.Second)
	for {
		missing, _ := local.Missing(context.Background(), rm.ids)
		if len(missing) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d blocks still missing after prefetch", len(missing))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestNoRemote(t *testing.T) {
	c, _ := cache.New(context.Background(), cache.Config{Store: memstore.New()})
	defer c.Close()
	_, err := c.ReadBlock(context.Background(), blockstore.Sum([]byte("x")), nil)
	if !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("got %v, want ErrNotFound", err)
	}
}

// TestReadBlocks: a run read through a badger cache fills blocks the
// store holds raw with run reads, fetches the missing ones, and returns
// every byte as the server has it; a store opened as dvfs mount opens it
// (VerifiedPuts) keeps the fetched blocks plain, for run reads next time.
func TestReadBlocks(t *testing.T) {
	for _, verified := range []bool{false, true} {
		t.Run(fmt.Sprintf("verified=%v", verified), func(t *testing.T) { testReadBlocks(t, verified) })
	}
}

// badgerCache opens a cache over a badger store in dir (volatile, as a
// workstation's; verified: VerifiedPuts) that fetches from rm; both are
// closed when the test ends.
func badgerCache(t *testing.T, dir string, rm *remote, verified bool) (*badgerstore.Store, *cache.Cache) {
	t.Helper()
	local, err := badgerstore.Open(dir, badgerstore.Config{Volatile: true, VerifiedPuts: verified})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { local.Close() })
	c, err := cache.New(context.Background(), cache.Config{Store: local, Remote: rm.client})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return local, c
}

func testReadBlocks(t *testing.T, verified bool) {
	const size = 64 << 10
	rm := newRemote(t, 3) // compressible: sent zstd
	local, c := badgerCache(t, disktest.TempDir(t), rm, verified)
	ctx := context.Background()
	// Six raw blocks already cached (as multicast leaves them).
	var ids []blockstore.ID
	var plains [][]byte
	r := rand.New(rand.NewPCG(3, 3))
	var raw []blockstore.Block
	for range 6 {
		p := storetest.RandomBytes(r, size)
		raw = append(raw, storetest.NewBlock(p))
		ids, plains = append(ids, raw[len(raw)-1].ID), append(plains, p)
	}
	if err := c.Put(ctx, raw...); err != nil {
		t.Fatal(err)
	}
	// The run: three cached, the server's three, three cached.
	run := append(append(append([]blockstore.ID{}, ids[:3]...), rm.ids...), ids[3:]...)
	want := bytes.Join(append(append(append([][]byte{}, plains[:3]...), rm.plains...), plains[3:]...), nil)
	for round := range 2 {
		before := rm.client.Stats().Requests
		dst := make([]byte, len(run)*size)
		if err := c.ReadBlocks(ctx, run, size, dst); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !bytes.Equal(dst, want) {
			t.Fatalf("round %d: wrong bytes", round)
		}
		// The three misses go in one request.
		if n := rm.client.Stats().Requests - before; n != int64(1-round) {
			t.Fatalf("round %d: %d requests to the server, want %d", round, n, 1-round)
		}
	}
	// Round 1: 6 hits and 3 misses; round 2: 9 hits.
	if st := c.Stats(); st.Misses != 3 || st.Fetched != 3 || st.Hits != 15 {
		t.Fatalf("stats %+v, want 3 misses fetched and 15 hits", st)
	}
	for _, id := range rm.ids {
		frame, err := local.GetFrame(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		hdr, _, err := blockstore.SplitFrame(frame)
		if err != nil {
			t.Fatal(err)
		}
		if raw, _, _ := blockstore.RawHeader(hdr); raw != verified {
			t.Errorf("fetched block kept raw=%v, want %v", raw, verified)
		}
	}
	// A block the manifest says is bigger than it is: an error, not data.
	if err := c.ReadBlocks(ctx, []blockstore.ID{rm.ids[0]}, size+1, make([]byte, size+1)); !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("block of the wrong size: %v", err)
	}
}

// TestCorruptCachedBlockFetchedAgain: a cached block damaged on the cache's
// disk (one bit, under the CRC a VerifiedPuts store checks on every read)
// is never served: the read fetches it again from the server.
func TestCorruptCachedBlockFetchedAgain(t *testing.T) {
	const size = 64 << 10
	rm := newRemote(t, 3)
	dir := disktest.TempDir(t)
	_, c := badgerCache(t, dir, rm, true)
	ctx := context.Background()
	want := bytes.Join(rm.plains, nil)
	read := func() {
		t.Helper()
		dst := make([]byte, len(rm.ids)*size)
		if err := c.ReadBlocks(ctx, rm.ids, size, dst); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst, want) {
			t.Fatal("wrong bytes")
		}
	}
	read()
	// Flip a bit in the middle of block 1's plain bytes in its pack.
	packs, err := filepath.Glob(filepath.Join(dir, "packs", "*.pack"))
	if err != nil || len(packs) == 0 {
		t.Fatalf("no packs: %v", err)
	}
	flipped := false
	for _, p := range packs {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if i := bytes.Index(b, rm.plains[1]); i >= 0 {
			f, err := os.OpenFile(p, os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			_, err = f.WriteAt([]byte{b[i+size/2] ^ 0x04}, int64(i+size/2))
			f.Close()
			if err != nil {
				t.Fatal(err)
			}
			flipped = true
			break
		}
	}
	if !flipped {
		t.Fatal("block 1's plain bytes are not in any pack: the cache did not keep it plain")
	}
	before := c.Stats()
	read()
	after := c.Stats()
	if after.Corrupt != before.Corrupt+1 || after.Fetched != before.Fetched+1 {
		t.Fatalf("after the bit flip: corrupt %d -> %d, fetched %d -> %d; want one of each more",
			before.Corrupt, after.Corrupt, before.Fetched, after.Fetched)
	}
	read() // the block fetched again is whole
}

// A reader does not wait for a background fill of the blocks it reads:
// the server answers the fill after readers' fetches (here at 1 KiB/s,
// so the fill's first request takes most of an hour), and the fill
// claims no block, so the reader fetches what it needs itself.
func TestReaderDoesNotWaitForBackgroundFill(t *testing.T) {
	rm := newRemoteWith(t, 40, server.Limits{BackgroundRate: 1 << 10}, true)
	local := memstore.New()
	c, err := cache.New(context.Background(), cache.Config{Store: local, Remote: rm.client})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.FillBackground(rm.ids)
	deadline := time.Now().Add(time.Minute)
	for rm.server.Background().Bytes == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the background fill never reached the server")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	got, err := c.ReadBlock(ctx, rm.ids[39], nil)
	if err != nil || !bytes.Equal(got, rm.plains[39]) {
		t.Fatalf("read of a block the fill asked for: %v", err)
	}
	dst := make([]byte, 10*(64<<10))
	if err := c.ReadBlocks(ctx, rm.ids[20:30], 64<<10, dst); err != nil {
		t.Fatalf("run read of blocks the fill asked for: %v", err)
	}
	for i := range 10 {
		if !bytes.Equal(dst[i<<16:(i+1)<<16], rm.plains[20+i]) {
			t.Fatalf("block %d: wrong bytes", 20+i)
		}
	}
	if st := c.Stats(); st.Fetched != 11 {
		t.Fatalf("stats %+v: want the 11 blocks read fetched, and none of the stalled fill", st)
	}
}

// askedStore counts the IDs Missing was asked about.
type askedStore struct {
	*memstore.Store
	asked atomic.Int64
}

func (s *askedStore) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	s.asked.Add(int64(len(ids)))
	return s.Store.Missing(ctx, ids)
}

// A background fill asks the store only about blocks the cache does not
// list: a warm cache opens a clone without an index lookup per block.
func TestFillBackgroundSkipsCachedBlocks(t *testing.T) {
	rm := newRemote(t, 5)
	local := &askedStore{Store: memstore.New()}
	c, err := cache.New(context.Background(), cache.Config{Store: local, Remote: rm.client})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	ctx := context.Background()
	for _, id := range rm.ids[:4] {
		if _, err := c.ReadBlock(ctx, id, nil); err != nil {
			t.Fatal(err)
		}
	}
	before := local.asked.Load()
	c.FillBackground(rm.ids)
	deadline := time.Now().Add(time.Minute)
	for c.Stats().Fetched != 5 {
		if time.Now().After(deadline) {
			t.Fatalf("the fill never fetched the fifth block: %+v", c.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if n := local.asked.Load() - before; n != 1 {
		t.Fatalf("the fill asked the store about %d blocks; want only the one the cache lacked", n)
	}
	got, err := c.ReadBlock(ctx, rm.ids[4], nil)
	if err != nil || !bytes.Equal(got, rm.plains[4]) {
		t.Fatalf("the filled block: %v", err)
	}
}
