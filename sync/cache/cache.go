// Package cache is a workstation's block cache: one verified block store per
// machine, shared by every mount on it, filled on demand from the server
// (and, later, by multicast). It holds only clean blocks (blocks the
// server has), so any of them may be evicted when the cache is over its
// size limit; a clone's unsynced data lives in the overlay, never here.
package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Remote is where missing blocks come from (sync/client.Client). fn gets
// each block's frame and plain bytes, already verified against its ID.
type Remote interface {
	FetchFrames(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, frame, plain []byte) error) error
}

// Config configures a Cache.
type Config struct {
	// Store holds the cached blocks.
	Store blockstore.Store
	// Remote supplies blocks the store lacks; nil makes the cache
	// local-only (a miss is an error wrapping blockstore.ErrNotFound).
	Remote Remote
	// Limit is the most bytes of blocks kept, each counted at the larger
	// of its frame and its plain size (a store with VerifiedPuts keeps
	// compressed frames decoded); 0 means no limit.
	Limit int64
	// PrefetchWorkers is how many batches are fetched ahead at once;
	// 0 means 2.
	PrefetchWorkers int
	// PrefetchBatch is how many blocks one prefetch request asks for; 0
	// means 32 (2 MiB of 64 KiB blocks).
	PrefetchBatch int
	// Logger receives the cache's log.
	Logger *slog.Logger
	// Dir is a directory on the disk that holds Store, and Reserve the
	// free space kept there: a block that would leave less is not stored
	// (a read is served all the same, uncached; a multicast session or a
	// background fill fails and is tried again later). Templates can be
	// fetched again; what the disk keeps below the reserve is for the
	// user's clone writes and the metadata stores. 0 keeps no reserve.
	Dir     string
	Reserve int64
}

// ErrNoSpace: the cache's disk is down to its reserve (Config.Reserve);
// it wraps ENOSPC.
var ErrNoSpace = errors.New("cache: disk down to its reserve")

// Stats counts what the cache did.
type Stats struct {
	Hits, Misses, Fetched, Evicted, Corrupt int64
	// Received counts blocks that came by another way (Put: multicast);
	// Filled those a background fill fetched by unicast (Filler);
	// Uncached those read from the server and not kept, the disk being
	// down to its reserve.
	Received, Filled, Uncached int64
	Blocks                     int
	Bytes                      int64
}

// Cache reads blocks through a local store. Safe for concurrent use.
type Cache struct {
	cfg Config
	log *slog.Logger
	lru *clock

	// inflight holds a call for each block being fetched, by a demand
	// miss or a prefetch alike, so nobody fetches a block twice: a reader
	// that misses a block already on its way waits for it.
	inflightMu sync.Mutex
	inflight   map[blockstore.ID]*call

	prefetchQ  chan blockstore.ID
	queued     sync.Map        // ID -> struct{}: in the prefetch queue
	bg         context.Context // background work's context, ended by Close
	stop       context.CancelFunc
	wg         sync.WaitGroup
	hits, miss atomic.Int64
	fetched    atomic.Int64
	received   atomic.Int64
	filled     atomic.Int64
	uncached   atomic.Int64
	// fullWarned is when the reserve was last logged (unix nanoseconds).
	fullWarned atomic.Int64
	corrupt    atomic.Int64
}

// New opens a cache over cfg.Store, learning what it holds.
func New(ctx context.Context, cfg Config) (*Cache, error) {
	if cfg.Store == nil {
		return nil, errors.New("cache: no store")
	}
	if cfg.PrefetchWorkers == 0 {
		cfg.PrefetchWorkers = 2
	}
	if cfg.PrefetchBatch == 0 {
		cfg.PrefetchBatch = 32
	}
	c := &Cache{cfg: cfg, log: cfg.Logger, lru: newClock(), prefetchQ: make(chan blockstore.ID, 4096),
		inflight: make(map[blockstore.ID]*call)}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	// Sizes of blocks already stored are not known without reading them;
	// count each as a full block, which errs towards evicting early.
	err := cfg.Store.Walk(ctx, func(id blockstore.ID) error {
		c.lru.add(id, blockstore.DefaultBlockSize)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("cache: scan: %w", err)
	}
	bg, stop := context.WithCancel(context.Background())
	c.bg, c.stop = bg, stop
	for range cfg.PrefetchWorkers {
		c.wg.Add(1)
		go c.prefetcher(bg)
	}
	return c, nil
}

// Close stops the prefetchers; the store stays open (its owner closes it).
func (c *Cache) Close() error {
	c.stop()
	c.wg.Wait()
	return nil
}

// ReadBlock appends the verified plain bytes of block id to dst, fetching
// the block from the remote when the store lacks it. A block that is
// corrupt on local disk is dropped and fetched again.
func (c *Cache) ReadBlock(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	out, err := c.cfg.Store.Get(ctx, id, dst)
	if err == nil {
		c.hits.Add(1)
		c.lru.touch(id)
		return out, nil
	}
	if errors.Is(err, blockstore.ErrCorrupt) {
		c.corrupt.Add(1)
		c.log.Error("cached block is corrupt on disk; fetching it again", "block", id, "err", err)
		if derr := c.cfg.Store.Delete(ctx, id); derr != nil {
			return dst, errors.Join(err, derr)
		}
		c.lru.remove(id)
	} else if !errors.Is(err, blockstore.ErrNotFound) {
		return dst, err
	}
	c.miss.Add(1)
	if c.cfg.Remote == nil {
		return dst, fmt.Errorf("block %s: %w (no server)", id.Short(), blockstore.ErrNotFound)
	}
	// A block already being fetched is waited for, then read from the
	// store; otherwise this reader fetches it and keeps the bytes it
	// verified, without reading them back.
	if cl := c.joinInflight(id); cl != nil {
		select {
		case <-cl.done:
		case <-ctx.Done():
			return dst, ctx.Err()
		}
		if cl.err == nil {
			if out, err := c.cfg.Store.Get(ctx, id, dst); err == nil {
				return out, nil
			}
		}
		// The fetch failed or the block was evicted at once: fetch it
		// ourselves.
	}
	var out2 []byte
	err = c.fetch(ctx, []blockstore.ID{id}, func(_ blockstore.ID, p []byte) {
		out2 = append(dst, p...)
	})
	if errors.Is(err, ErrNoSpace) && out2 != nil {
		// Verified, not kept: the reader gets it all the same.
		c.uncached.Add(1)
		return out2, nil
	}
	if err != nil {
		return dst, err
	}
	if out2 == nil {
		// Another fetch took the block between our look and ours.
		return c.ReadBlock(ctx, id, dst)
	}
	return out2, nil
}

// ReadBlocks fills dst, which holds len(ids) blocks of size bytes back to
// back, with the verified plain bytes of ids: what the store holds in
// runs, with one read a run (blockstore.RunGetter); the blocks the store
// lacks fetched together, with one request (fetchMissing); and the rest
// one by one as ReadBlock reads them (fetched again when corrupt, waited
// for when another reader is fetching them). ids must hold no hole.
func (c *Cache) ReadBlocks(ctx context.Context, ids []blockstore.ID, size int, dst []byte) error {
	var small [32]bool // a 1 MiB request is 16 blocks: no allocation
	var done []bool
	if len(ids) <= len(small) {
		done = small[:len(ids)]
	} else {
		done = make([]bool, len(ids))
	}
	if rg, ok := c.cfg.Store.(blockstore.RunGetter); ok {
		if err := rg.GetRun(ctx, ids, size, dst, done); err != nil {
			return err
		}
	}
	undone := 0
	for i, id := range ids {
		if done[i] {
			c.hits.Add(1)
			c.lru.touch(id)
		} else {
			undone++
		}
	}
	if undone > 1 {
		if err := c.fetchMissing(ctx, ids, size, dst, done); err != nil {
			return err
		}
	}
	for i, id := range ids {
		if done[i] {
			continue
		}
		chunk := dst[i*size : (i+1)*size : (i+1)*size]
		b, err := c.ReadBlock(ctx, id, chunk[:0])
		if err != nil {
			return fmt.Errorf("block %s: %w", id.Short(), err)
		}
		if len(b) != size {
			return fmt.Errorf("block %s: %w: %d bytes, the manifest says %d", id.Short(), blockstore.ErrCorrupt, len(b), size)
		}
		if &b[0] != &chunk[0] {
			copy(chunk, b)
		}
	}
	return nil
}

// fetchMissing fetches with one request the blocks of ids not done that
// the store lacks, copies each into its places in dst and marks them
// done: a cold read of a 1 MiB request costs one round trip to the server,
// not sixteen (and over an object store, one ranged GET a run there
// rather than one a block). Blocks another reader is fetching, and any of
// a size other than size, are left for ReadBlock.
func (c *Cache) fetchMissing(ctx context.Context, ids []blockstore.ID, size int, dst []byte, done []bool) error {
	if c.cfg.Remote == nil {
		return nil
	}
	var undone []blockstore.ID
	where := make(map[blockstore.ID][]int)
	for i, id := range ids {
		if !done[i] {
			if len(where[id]) == 0 {
				undone = append(undone, id)
			}
			where[id] = append(where[id], i)
		}
	}
	missing, err := c.cfg.Store.Missing(ctx, undone)
	if err != nil || len(missing) < 2 {
		return err // one block: ReadBlock fetches it the same way
	}
	var got int64
	err = c.fetch(ctx, missing, func(id blockstore.ID, plain []byte) {
		if len(plain) != size {
			return // ReadBlock says what is wrong with it
		}
		got++
		for _, i := range where[id] {
			copy(dst[i*size:(i+1)*size], plain)
			done[i] = true
		}
	})
	c.miss.Add(got)
	if errors.Is(err, ErrNoSpace) {
		// Verified, not kept: the reader has them all the same.
		c.uncached.Add(got)
		return nil
	}
	return err
}

// call is one block's fetch in flight.
type call struct {
	done chan struct{}
	err  error
}

func (c *Cache) joinInflight(id blockstore.ID) *call {
	c.inflightMu.Lock()
	defer c.inflightMu.Unlock()
	return c.inflight[id]
}

// claim registers calls for the ids nobody is fetching yet and returns
// those ids with their calls.
func (c *Cache) claim(ids []blockstore.ID) ([]blockstore.ID, []*call) {
	c.inflightMu.Lock()
	defer c.inflightMu.Unlock()
	var mine []blockstore.ID
	var calls []*call
	for _, id := range ids {
		if _, busy := c.inflight[id]; busy {
			continue
		}
		cl := &call{done: make(chan struct{})}
		c.inflight[id] = cl
		mine, calls = append(mine, id), append(calls, cl)
	}
	return mine, calls
}

// unclaimed returns the ids nobody is fetching.
func (c *Cache) unclaimed(ids []blockstore.ID) []blockstore.ID {
	c.inflightMu.Lock()
	defer c.inflightMu.Unlock()
	var out []blockstore.ID
	for _, id := range ids {
		if _, busy := c.inflight[id]; !busy {
			out = append(out, id)
		}
	}
	return out
}

func (c *Cache) release(ids []blockstore.ID, calls []*call, err error) {
	c.inflightMu.Lock()
	for _, id := range ids {
		delete(c.inflight, id)
	}
	c.inflightMu.Unlock()
	for _, cl := range calls {
		cl.err = err
		close(cl.done)
	}
}

// Fill makes sure the store holds every block of ids, fetching the
// missing ones in batches; blocks another caller is fetching are left to
// it (Fill does not wait for them).
func (c *Cache) Fill(ctx context.Context, ids []blockstore.ID) error {
	missing, err := c.cfg.Store.Missing(ctx, ids)
	if err != nil || len(missing) == 0 {
		return err
	}
	if c.cfg.Remote == nil {
		return fmt.Errorf("block %s: %w (no server)", missing[0].Short(), blockstore.ErrNotFound)
	}
	return c.fetch(ctx, missing, nil)
}

// fetch gets blocks from the remote and stores the frames as sent: the
// remote verified each against its ID, and compressing again would only
// cost CPU. each, if set, sees every block's plain bytes.
//
// A background fetch (api.WithBackground), which the server answers after
// readers' fetches, claims nothing, so that no reader waits for it, and
// leaves out the blocks readers are fetching.
func (c *Cache) fetch(ctx context.Context, ids []blockstore.ID, each func(blockstore.ID, []byte)) (err error) {
	if api.IsBackground(ctx) {
		ids = c.unclaimed(ids)
	} else {
		var calls []*call
		ids, calls = c.claim(ids)
		defer func() { c.release(ids, calls, err) }()
	}
	if len(ids) == 0 {
		return nil
	}
	var blocks []blockstore.Block
	var size int64
	flush := func() error {
		if len(blocks) == 0 {
			return nil
		}
		if err := c.put(ctx, blocks); err != nil {
			return err
		}
		blocks, size = blocks[:0], 0
		return nil
	}
	err = c.cfg.Remote.FetchFrames(ctx, ids, func(id blockstore.ID, frame, plain []byte) error {
		if each != nil {
			each(id, plain)
		}
		frame = append([]byte(nil), frame...) // the remote reuses its buffer
		blocks = append(blocks, blockstore.Block{ID: id, Frame: frame})
		size += int64(len(frame))
		if size >= 8<<20 {
			return flush()
		}
		return nil
	})
	if err != nil {
		return err
	}
	return flush()
}

// put stores fetched blocks, evicting clean blocks first when over the
// limit.
func (c *Cache) put(ctx context.Context, blocks []blockstore.Block) error {
	if err := c.store(ctx, blocks); err != nil {
		return err
	}
	c.fetched.Add(int64(len(blocks)))
	return nil
}

func (c *Cache) store(ctx context.Context, blocks []blockstore.Block) error {
	var size int64
	for _, b := range blocks {
		size += storedSize(b)
	}
	if err := c.evict(ctx, size); err != nil {
		return err
	}
	if err := diskio.CheckFree(c.cfg.Dir, size, c.cfg.Reserve); err != nil {
		if now := time.Now().UnixNano(); now-c.fullWarned.Load() > int64(time.Minute) {
			c.fullWarned.Store(now)
			c.log.Warn("cache disk down to its reserve: template blocks are not cached until space returns", "err", err)
		}
		return fmt.Errorf("%w: %w", ErrNoSpace, err)
	}
	if err := c.cfg.Store.Put(ctx, blocks...); err != nil {
		return fmt.Errorf("cache: store %d blocks: %w", len(blocks), err)
	}
	for _, b := range blocks {
		c.lru.add(b.ID, storedSize(b))
	}
	return nil
}

// storedSize is what block b may take in the store: its plain size when
// that is larger than its frame, since the workstation's store keeps
// blocks plain (badgerstore's VerifiedPuts), else its frame's.
func storedSize(b blockstore.Block) int64 {
	n, err := blockstore.FrameLen(b.Frame)
	if err != nil || n < len(b.Frame) {
		return int64(len(b.Frame))
	}
	return int64(n)
}

// evict deletes least recently used blocks until size more bytes fit
// under the limit (down to 90% of it, so eviction runs in batches).
func (c *Cache) evict(ctx context.Context, size int64) error {
	if c.cfg.Limit == 0 || c.lru.bytes()+size <= c.cfg.Limit {
		return nil
	}
	target := c.cfg.Limit*9/10 - size
	victims := c.lru.evict(max(target, 0))
	if len(victims) == 0 {
		return nil
	}
	if err := c.cfg.Store.Delete(ctx, victims...); err != nil {
		return fmt.Errorf("cache: evict: %w", err)
	}
	c.log.Debug("evicted clean blocks", "blocks", len(victims), "cached_bytes", c.lru.bytes())
	return nil
}

// Prefetch queues blocks to be fetched in the background. It never blocks:
// when the queue is full the rest are dropped (they will be read on demand).
func (c *Cache) Prefetch(ids []blockstore.ID) {
	for _, id := range ids {
		if id.IsHole() || c.lru.has(id) || c.joinInflight(id) != nil {
			continue
		}
		if _, dup := c.queued.LoadOrStore(id, struct{}{}); dup {
			continue
		}
		select {
		case c.prefetchQ <- id:
		default:
			c.queued.Delete(id)
			return
		}
	}
}

func (c *Cache) prefetcher(ctx context.Context) {
	defer c.wg.Done()
	batch := make([]blockstore.ID, 0, c.cfg.PrefetchBatch)
	for {
		batch = batch[:0]
		select {
		case id := <-c.prefetchQ:
			batch = append(batch, id)
		case <-ctx.Done():
			return
		}
	more:
		for len(batch) < cap(batch) {
			select {
			case id := <-c.prefetchQ:
				batch = append(batch, id)
			default:
				break more
			}
		}
		if err := c.Fill(ctx, batch); err != nil && ctx.Err() == nil && !errors.Is(err, ErrNoSpace) {
			c.log.Warn("prefetch failed", "blocks", len(batch), "err", err)
		}
		for _, id := range batch {
			c.queued.Delete(id)
		}
	}
}

// Stats reports the cache's counters.
func (c *Cache) Stats() Stats {
	return Stats{
		Hits: c.hits.Load(), Misses: c.miss.Load(), Fetched: c.fetched.Load(), Received: c.received.Load(), Filled: c.filled.Load(), Uncached: c.uncached.Load(),
		Evicted: c.lru.evicted.Load(), Corrupt: c.corrupt.Load(),
		Blocks: c.lru.len(), Bytes: c.lru.bytes(),
	}
}

// FillBackground fetches, in the background and in batches, every block of
// ids the store lacks: a clone opened here gets all of its blocks over time
// (so it keeps working if the server goes away), while what is being read
// is fetched first by the readers' own misses. It returns at once; the
// work stops with Close.
func (c *Cache) FillBackground(ids []blockstore.ID) {
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		// The server answers these after readers' fetches; readers do
		// not wait for them (fetch).
		ctx := api.WithBackground(c.bg)
		// The clock lists every block the store holds: those are left
		// out here, in memory, and the store is asked only about the
		// rest. A warm cache asked its index about every block of a
		// clone at each open (6% of a warm mount's CPU in the storm).
		ids = slices.DeleteFunc(slices.Clone(ids), c.lru.has)
		for len(ids) > 0 && ctx.Err() == nil {
			n := min(len(ids), 4*c.cfg.PrefetchBatch)
			if err := c.Fill(ctx, ids[:n]); err != nil {
				if ctx.Err() == nil {
					c.log.Warn("background fill failed; retrying", "err", err)
					select {
					case <-time.After(5 * time.Second):
					case <-ctx.Done():
					}
				}
				continue
			}
			ids = ids[n:]
		}
	}()
}

// SectorCVs appends to dst the sector chaining values of cached block id
// (blockstore.AppendSectorCVs), when the store keeps them (badgerstore
// with VerifiedPuts, for blocks put since it does), checked against id.
// It never fetches: ErrNotFound when the store has none. Damaged ones
// are logged and refused (ErrCorrupt); the caller hashes the block.
func (c *Cache) SectorCVs(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	s, ok := c.cfg.Store.(interface {
		SectorCVs(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error)
	})
	if !ok {
		return dst, fmt.Errorf("block %s: no sector chaining values kept: %w", id.Short(), blockstore.ErrNotFound)
	}
	out, err := s.SectorCVs(ctx, id, dst)
	if errors.Is(err, blockstore.ErrCorrupt) {
		c.log.Error("cached block's sector chaining values are damaged; the block is hashed whole instead", "block", id, "err", err)
	}
	return out, err
}

// Put stores verified blocks that arrived by another way (a multicast
// session), evicting clean blocks first when over the limit and counting
// them like fetched ones.
func (c *Cache) Put(ctx context.Context, blocks ...blockstore.Block) error {
	if err := c.store(ctx, blocks); err != nil {
		return err
	}
	c.received.Add(int64(len(blocks)))
	return nil
}

// Filler is the cache as the store of a background unicast fill: its Put
// counts the blocks as Filled, not Received.
func (c *Cache) Filler() *Filler { return &Filler{c} }

// Filler: see Cache.Filler.
type Filler struct{ c *Cache }

// Put stores verified blocks fetched by a background fill.
func (f *Filler) Put(ctx context.Context, blocks ...blockstore.Block) error {
	if err := f.c.store(ctx, blocks); err != nil {
		return err
	}
	f.c.filled.Add(int64(len(blocks)))
	return nil
}

// Missing returns the IDs of ids the cache lacks.
func (f *Filler) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	return f.c.Missing(ctx, ids)
}

// Missing returns the IDs of ids the cache lacks.
func (c *Cache) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	return c.cfg.Store.Missing(ctx, ids)
}
