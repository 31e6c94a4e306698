package writeback

import (
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"
	"sync"

	"golang.org/x/sync/errgroup"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

const (
	// batchBytes is the size from which a batch is sent.
	batchBytes = 16 << 20
	// uploadsInFlight is how many batches are on their way at once: the
	// next batch is read, compressed and sent while the server stores the
	// one before (it syncs every batch before answering).
	uploadsInFlight = 2
)

// upload sends the blocks of m the server lacks: from outbox file (""
// for none), compressed on the way, and any not there from the Store (the
// outbox of earlier versions, which kept frames in the Store). A block
// sealed with a delta goes as that delta (its changed sectors, against a
// block the server holds), unless the server refused a delta since the
// last commit: then every block goes whole.
func (c *cloneWB) upload(ctx context.Context, m *manifest.Manifest, file string) error {
	err := c.uploadOnce(ctx, m, file, !c.noDelta)
	if errors.Is(err, api.ErrDeltaRefused) {
		// The server lacks a base, or a delta did not rebuild its
		// block: what the server took stays; the rest goes whole.
		c.w.log.Warn("the server refused a delta; sending the clone's blocks whole", "clone", c.name, "err", err)
		c.noDelta = true
		err = c.uploadOnce(ctx, m, file, false)
	}
	return err
}

func (c *cloneWB) uploadOnce(ctx context.Context, m *manifest.Manifest, file string, deltas bool) error {
	missing, err := c.w.cfg.Server.Missing(ctx, slices.Collect(m.BlockIDs()))
	if err != nil || len(missing) == 0 {
		return err
	}
	want := make(map[blockstore.ID]bool, len(missing))
	for _, id := range missing {
		want[id] = true
	}
	type batch struct {
		data   []byte
		blocks int64
	}
	g, gctx := errgroup.WithContext(ctx)
	full := make(chan batch)
	free := make(chan []byte, uploadsInFlight+1)
	var progMu sync.Mutex
	var done int64
	for range uploadsInFlight {
		g.Go(func() error {
			for b := range full {
				if err := c.w.cfg.Server.Upload(gctx, b.data); err != nil {
					return err
				}
				c.sent.Add(int64(len(b.data)))
				free <- b.data[:0]
				if c.w.cfg.Progress != nil {
					progMu.Lock()
					done += b.blocks
					c.w.cfg.Progress(c.name, done, int64(len(missing)))
					progMu.Unlock()
				}
			}
			return nil
		})
	}
	g.Go(func() error {
		defer close(full)
		var cur batch
		var frame, whole []byte
		add := func(id blockstore.ID, frame []byte) error {
			if cur.data == nil {
				select {
				case cur.data = <-free:
				default:
					cur.data = make([]byte, 0, batchBytes+blockstore.MaxBlockSize+64)
				}
			}
			cur.data = appendBlock(cur.data, id, frame)
			cur.blocks++
			if len(cur.data) < batchBytes {
				return nil
			}
			select {
			case full <- cur:
				cur = batch{}
				return nil
			case <-gctx.Done():
				return gctx.Err()
			}
		}
		if file != "" {
			err := c.w.outbox.scan(gctx, file, func(id blockstore.ID, plain []byte, d delta) error {
				if !want[id] {
					return nil
				}
				delete(want, id)
				switch {
				case deltas && d.whole != 0:
					frame = blockstore.AppendDeltaFrameSectors(frame[:0], d.base, d.sectorSize, d.mask, d.whole, plain)
				case deltas && d.fits(len(plain)):
					frame = blockstore.AppendDeltaFrame(frame[:0], d.base, d.sectorSize, d.mask, plain)
				case d.whole != 0:
					// Only the sectors were kept: the block is rebuilt
					// over its base from the cache (which fetches it
					// if it must) and checked against its ID.
					var err error
					if whole, err = c.rebuild(gctx, id, d, plain, whole[:0]); err != nil {
						return err
					}
					frame = blockstore.Encode(frame[:0], whole)
				default:
					frame = blockstore.Encode(frame[:0], plain)
				}
				return add(id, frame)
			})
			if err != nil {
				return err
			}
		}
		for _, id := range missing {
			if !want[id] {
				continue
			}
			delete(want, id)
			var err error
			frame, err = c.w.cfg.Store.GetFrame(gctx, id, frame[:0])
			if err != nil {
				return fmt.Errorf("outbox block %s: %w", id.Short(), err)
			}
			if err := add(id, frame); err != nil {
				return err
			}
		}
		if cur.blocks == 0 {
			return nil
		}
		select {
		case full <- cur:
			return nil
		case <-gctx.Done():
			return gctx.Err()
		}
	})
	return g.Wait()
}

// rebuild appends to dst the block id of an outbox record that holds only
// the sectors of d: its base from Config.Blocks with them replaced,
// checked against id.
func (c *cloneWB) rebuild(ctx context.Context, id blockstore.ID, d delta, sectors, dst []byte) ([]byte, error) {
	if c.w.cfg.Blocks == nil {
		return dst, fmt.Errorf("outbox block %s: its base %s: no block source", id.Short(), d.base.Short())
	}
	b, err := c.w.cfg.Blocks.ReadBlock(ctx, d.base, dst)
	if err != nil {
		return dst, fmt.Errorf("outbox block %s: its base %s: %w", id.Short(), d.base.Short(), err)
	}
	if len(b) != d.whole {
		return dst, fmt.Errorf("outbox block %s: its base %s is %d bytes, want %d", id.Short(), d.base.Short(), len(b), d.whole)
	}
	for m := d.mask; m != 0; m &= m - 1 {
		off := bits.TrailingZeros64(m) * d.sectorSize
		n := copy(b[off:min(off+d.sectorSize, len(b))], sectors)
		sectors = sectors[n:]
	}
	if got := blockstore.Sum(b); got != id {
		return dst, fmt.Errorf("outbox block %s: rebuilt over its base %s it hashes to %s: %w", id.Short(), d.base.Short(), got.Short(), errOutboxCorrupt)
	}
	return b, nil
}
