package fs

import (
	"container/list"
	"context"
	"fmt"
	"sync"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// readBase fills p with the bytes of the base file f from off, reading
// bytes at or past limit (and all of them when f is nil) as zeros, and
// holes as zeros. A read of many blocks is split in two halves read at
// once: on a cached template, a block costs a store lookup and a hash, and
// one goroutine per request left a core idle (pprof: 0.44 of a loopback
// mount's sequential reads).
func (fsys *FS) readBase(ctx context.Context, bs int64, f *manifest.File, p []byte, off, limit int64) error {
	if int64(len(p)) < 4*bs {
		return fsys.readBaseRun(ctx, bs, f, p, off, limit)
	}
	// Split at a block boundary near the middle.
	mid := ((off+int64(len(p))/2)/bs)*bs - off
	var wg sync.WaitGroup
	var err2 error
	wg.Add(1)
	go func() {
		defer wg.Done()
		err2 = fsys.readBaseRun(ctx, bs, f, p[mid:], off+mid, limit)
	}()
	err1 := fsys.readBaseRun(ctx, bs, f, p[:mid], off, limit)
	wg.Wait()
	if err1 != nil {
		return err1
	}
	return err2
}

func (fsys *FS) readBaseRun(ctx context.Context, bs int64, f *manifest.File, p []byte, off, limit int64) error {
	for len(p) > 0 {
		bi := off / bs
		in := off - bi*bs
		n := min(int64(len(p)), bs-in)
		chunk := p[:n]
		avail := min(n, limit-off) // bytes of chunk that come from the base
		if f == nil || avail <= 0 || bi >= int64(len(f.Blocks)) || f.Blocks[bi].IsHole() {
			clear(chunk)
		} else if k := fsys.wholeRun(bs, f, bi, in, int64(len(p)), limit-off); k > 1 {
			// Several whole blocks: one call, which reads those that
			// lie together on disk with one read.
			n = k * bs
			ids := f.Blocks[bi : bi+k]
			if err := fsys.runs.ReadBlocks(ctx, ids, int(bs), p[:n]); err != nil {
				return err
			}
		} else if _, want := f.BlockRange(uint32(bs), int(bi)); in == 0 && int64(want) == n && avail == n {
			// A whole block: decode it straight into the reply, with no
			// buffer of its own and no copy (the kernel's page cache keeps
			// it for whoever reads it again).
			b, err := fsys.cfg.Blocks.ReadBlock(ctx, f.Blocks[bi], chunk[:0:n])
			if err != nil {
				return fmt.Errorf("block %s: %w", f.Blocks[bi].Short(), err)
			}
			if len(b) != want {
				return fmt.Errorf("block %s: %w: %d bytes, the manifest says %d", f.Blocks[bi].Short(), ErrCorrupt, len(b), want)
			}
			if &b[0] != &chunk[0] {
				copy(chunk, b)
			}
		} else {
			b, err := fsys.block(ctx, f.Blocks[bi], want)
			if err != nil {
				return err
			}
			c := copy(chunk[:avail], b[min(in, int64(len(b))):])
			clear(chunk[c:])
		}
		p = p[n:]
		off += n
	}
	return nil
}

// wholeRun returns how many blocks from block bi a run read may fill: full
// blocks of bs bytes, none a hole, all within the first n bytes of the
// request and below limit (avail bytes from bi's start). 0 when the
// BlockReader reads no runs or the request starts inside block bi.
func (fsys *FS) wholeRun(bs int64, f *manifest.File, bi, in, n, avail int64) int64 {
	if fsys.runs == nil || in != 0 {
		return 0
	}
	k := int64(0)
	for k < n/bs && (k+1)*bs <= avail && bi+k < int64(len(f.Blocks)) && !f.Blocks[bi+k].IsHole() {
		if _, size := f.BlockRange(uint32(bs), int(bi+k)); int64(size) != bs {
			break
		}
		k++
	}
	return k
}

// block returns the plain bytes of block id, which must be want bytes
// long. The slice is shared: callers must not modify it.
func (fsys *FS) block(ctx context.Context, id blockstore.ID, want int) ([]byte, error) {
	if b, ok := fsys.cache.get(id); ok {
		return b, nil
	}
	b, err := fsys.cfg.Blocks.ReadBlock(ctx, id, make([]byte, 0, want))
	if err != nil {
		return nil, fmt.Errorf("block %s: %w", id.Short(), err)
	}
	if len(b) != want {
		return nil, fmt.Errorf("block %s: %w: %d bytes, the manifest says %d", id.Short(), ErrCorrupt, len(b), want)
	}
	fsys.cache.put(id, b)
	return b, nil
}

// readAhead follows one open file's reads to tell sequential ones.
type readAhead struct {
	mu   sync.Mutex
	next int64 // just past the last read
	upTo int64 // blocks below this index were handed to Prefetch
}

// seqSlack is how far a read may land from the end of the previous one
// and still count as sequential: the kernel sends readahead in parallel,
// so consecutive requests arrive a little out of order.
const seqSlack = 512 << 10

// readAheadBase hands the base blocks ahead of a sequential read of
// [off, off+n) to Prefetch, a batch at a time. Blocks at or past limit,
// holes, and blocks local says are local are left out.
func (fsys *FS) readAheadBase(ra *readAhead, bs int64, f *manifest.File, off, n, limit int64, local func(int64) bool) {
	if f == nil || fsys.cfg.PrefetchBlocks <= 0 {
		return
	}
	ra.mu.Lock()
	seq := ra.next > 0 && off <= ra.next+seqSlack && off+seqSlack >= ra.next
	ra.next = off + n
	if !seq {
		ra.upTo = 0
		ra.mu.Unlock()
		return
	}
	window := int64(fsys.cfg.PrefetchBlocks)
	next := (off + n + bs - 1) / bs
	if ra.upTo-next > window/2 {
		ra.mu.Unlock()
		return // still far enough ahead
	}
	from := max(ra.upTo, next)
	to := min(next+window, int64(len(f.Blocks)), (limit+bs-1)/bs)
	if from >= to {
		ra.mu.Unlock()
		return
	}
	ra.upTo = to
	ra.mu.Unlock()
	ids := make([]blockstore.ID, 0, to-from)
	for i := from; i < to; i++ {
		if id := f.Blocks[i]; !id.IsHole() && (local == nil || !local(i)) {
			ids = append(ids, id)
		}
	}
	if len(ids) > 0 {
		fsys.cfg.Blocks.Prefetch(ids)
	}
}

// blockCache is a small LRU of decoded blocks. Blocks are named by their
// hash, so an entry is never stale.
type blockCache struct {
	mu    sync.Mutex
	max   int
	ll    *list.List
	items map[blockstore.ID]*list.Element
}

type cacheEntry struct {
	id blockstore.ID
	b  []byte
}

func newBlockCache(n int) *blockCache {
	return &blockCache{max: n, ll: list.New(), items: make(map[blockstore.ID]*list.Element)}
}

func (c *blockCache) get(id blockstore.ID) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.items[id]
	if !ok {
		return nil, false
	}
	c.ll.MoveToFront(e)
	return e.Value.(*cacheEntry).b, true
}

func (c *blockCache) put(id blockstore.ID, b []byte) {
	if c.max <= 0 {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.items[id]; ok {
		return
	}
	c.items[id] = c.ll.PushFront(&cacheEntry{id, b})
	for c.ll.Len() > c.max {
		e := c.ll.Back()
		c.ll.Remove(e)
		delete(c.items, e.Value.(*cacheEntry).id)
	}
}
