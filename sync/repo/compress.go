package repo

import (
	"context"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// compressRound is how many deferred blocks one CompressDeferred call
// takes: 16 MiB of 64 KiB blocks. Each call syncs its new payloads and its
// index commit, so small rounds are bound by the disk's flushes (64 blocks
// a round took 10 s for 1.2 GiB); the loop still notices an upload within
// one round.
const compressRound = 256

// DefaultCompressIdle is how long no deferred block must have arrived before
// CompressLoop starts compressing.
const DefaultCompressIdle = 2 * time.Second

// CompressLoop compresses the blocks that clients uploaded in deferred
// frames (blockstore.EncodeDeferred), while uploads are idle: a client on a
// fast link (a publish on the server's own machine) sends plain bytes
// because compressing them would cost it more than sending them, and the
// server compresses them once the publish is over instead of during it.
// It runs until ctx ends; a store that cannot compress makes it return at
// once. It starts with a pass over what an earlier run left.
func (r *Repo) CompressLoop(ctx context.Context, idle time.Duration) {
	c, ok := r.store.(blockstore.Compressor)
	if !ok {
		return
	}
	if idle <= 0 {
		idle = DefaultCompressIdle
	}
	for {
		// Wait until deferred blocks have stopped arriving for idle.
		for {
			wait := idle - time.Since(time.Unix(0, r.lastDeferred.Load()))
			if wait <= 0 {
				break
			}
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		if more := r.compressSome(ctx, c, idle); !more {
			select {
			case <-ctx.Done():
				return
			case <-r.deferredArrived:
			}
		}
	}
}

// compressSome compresses deferred blocks until none is left (false) or
// new ones arrive, which is the signal to wait for idle again (true).
func (r *Repo) compressSome(ctx context.Context, c blockstore.Compressor, idle time.Duration) (more bool) {
	start, total := time.Now(), 0
	defer func() {
		if total > 0 {
			r.log.Info("compressed deferred blocks", "blocks", total, "took", time.Since(start).Round(time.Millisecond), "done", !more)
		}
	}()
	// Drain the signal: what arrives from now on is noticed below.
	select {
	case <-r.deferredArrived:
	default:
	}
	for {
		if time.Since(time.Unix(0, r.lastDeferred.Load())) < idle {
			return true
		}
		n, err := c.CompressDeferred(ctx, compressRound)
		if err != nil {
			if ctx.Err() == nil {
				r.log.Warn("compressing deferred blocks", "err", err)
			}
			return false
		}
		if n == 0 {
			return false
		}
		total += n
	}
}

// noteDeferred records that blocks arrived in deferred frames.
func (r *Repo) noteDeferred(blocks []blockstore.Block) {
	for _, b := range blocks {
		if blockstore.Deferred(b.Frame) {
			r.lastDeferred.Store(time.Now().UnixNano())
			select {
			case r.deferredArrived <- struct{}{}:
			default:
			}
			return
		}
	}
}
