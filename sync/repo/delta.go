package repo

import (
	"context"
	"errors"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Delta-stored blocks. A block uploaded as a delta frame (blockstore.
// AppendDeltaFrame) is kept as that frame, not rebuilt: a 4 KiB change to
// a 64 KiB block then costs about 4 KiB of disk instead of 64 (see
// DESIGN.md and BenchmarkDeltaStorage). Such a block lives in the
// metadata, not in the block store, under two keys written and deleted
// together:
//
//	dref/ID   its base's ID (32 bytes) and its depth (1 byte): how many
//	          deltas lie between it and a block stored whole
//	dfrm/ID   its delta frame
//
// GC reads only the small dref records; the frames are read when a block
// is rebuilt. A delta whose base is at depth MaxDeltaDepth is rebuilt and
// stored whole instead (compaction at write time), so no read applies more
// than MaxDeltaDepth deltas.
const (
	prefixDeltaRef   = "dref/"
	prefixDeltaFrame = "dfrm/"
)

func deltaRefKey(id blockstore.ID) string   { return prefixDeltaRef + id.String() }
func deltaFrameKey(id blockstore.ID) string { return prefixDeltaFrame + id.String() }

// DefaultMaxDeltaDepth is Config.MaxDeltaDepth's default. Frame of a block
// stored whole took 34 us, and of a delta-stored one 121, 134 and 161 us
// at depths 1, 4 and 8 (BenchmarkDeltaFrame, page cache warm): the cost is
// the rebuild's hash and encode, each further delta adds ~5 us, so 8
// keeps a read within 1.35x of depth 1 while a compaction (a 64 KiB
// block stored whole) comes once every 8 generations of a block.
const DefaultMaxDeltaDepth = 8

// maxChain bounds the deltas a rebuild follows whatever the configuration
// was when they were stored: a longer chain (a cycle, or damage) is
// corrupt.
const maxChain = 64

// deltaChunk is how many deltas one metadata commit takes, and
// deltaChunkBytes how many bytes of delta frames: a metadata store over
// the network bounds a commit's size (etcd's --max-request-bytes).
const (
	deltaChunk      = 1024
	deltaChunkBytes = 4 << 20
)

// errStoredBase: a delta's base is stored but cannot be read. It is the
// server's fault, not the client's: it must not map to 422.
var errStoredBase = errors.New("stored base block unreadable")

type deltaRef struct {
	base  blockstore.ID
	depth int
}

func appendDeltaRef(dst []byte, r deltaRef) []byte {
	return append(append(dst, r.base[:]...), byte(r.depth))
}

func parseDeltaRef(v []byte) (deltaRef, error) {
	if len(v) != blockstore.IDSize+1 {
		return deltaRef{}, fmt.Errorf("%w: delta record of %d bytes", blockstore.ErrCorrupt, len(v))
	}
	return deltaRef{base: blockstore.ID(v[:blockstore.IDSize]), depth: int(v[blockstore.IDSize])}, nil
}

// hasDelta reports whether block id is stored as a delta.
func (r *Repo) hasDelta(ctx context.Context, id blockstore.ID) (bool, error) {
	_, err := r.store.GetMeta(ctx, deltaRefKey(id))
	if errors.Is(err, blockstore.ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// withoutDeltas returns the IDs of missing (from the block store's
// Missing) that are not stored as deltas either.
func (r *Repo) withoutDeltas(ctx context.Context, missing []blockstore.ID) ([]blockstore.ID, error) {
	out := missing[:0]
	for _, id := range missing {
		ok, err := r.hasDelta(ctx, id)
		if err != nil {
			return nil, err
		}
		if !ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// rebuild appends the plain bytes of block id to dst: read from the block
// store, or rebuilt from its delta chain and checked against id. depth is
// how many deltas it applied. A block stored neither way gives an error
// wrapping blockstore.ErrNotFound.
func (r *Repo) rebuild(ctx context.Context, id blockstore.ID, dst []byte) (_ []byte, depth int, _ error) {
	var chain []blockstore.Delta // from id down to the block stored whole
	start := len(dst)
	cur := id
	for {
		out, err := r.store.Get(ctx, cur, dst)
		if err == nil {
			dst = out
			break
		}
		if !errors.Is(err, blockstore.ErrNotFound) {
			return dst, 0, err
		}
		frame, err := r.store.GetMeta(ctx, deltaFrameKey(cur))
		if errors.Is(err, blockstore.ErrNotFound) {
			return dst, 0, fmt.Errorf("block %s: %w", cur.Short(), blockstore.ErrNotFound)
		}
		if err != nil {
			return dst, 0, err
		}
		if len(chain) == maxChain {
			return dst, 0, fmt.Errorf("block %s: %w: delta chain longer than %d", id.Short(), blockstore.ErrCorrupt, maxChain)
		}
		d, err := blockstore.ParseDelta(frame)
		if err != nil {
			return dst, 0, fmt.Errorf("block %s: stored delta: %w", cur.Short(), err)
		}
		chain = append(chain, d)
		cur = d.Base
	}
	// Apply the chain upwards, between two buffers.
	plain, spare := dst[start:], []byte(nil)
	for i := len(chain) - 1; i >= 0; i-- {
		next, err := chain[i].Apply(spare[:0], plain)
		if err != nil {
			return dst[:start], 0, fmt.Errorf("block %s: stored delta: %w", id.Short(), err)
		}
		plain, spare = next, plain
	}
	dst = append(dst[:start], plain...)
	if err := blockstore.CheckPlain(id, dst[start:]); err != nil {
		return dst[:start], 0, err
	}
	return dst, len(chain), nil
}

// PutDeltas takes blocks uploaded as delta frames (blockstore.IsDelta):
// each is rebuilt from its base, which must be durable in this repository
// (stored whole or itself as a delta), and checked against its ID. Blocks
// that pass are stored durably before PutDeltas returns: as their delta
// frames, or rebuilt and whole when their base's depth is at
// MaxDeltaDepth. A block already present is skipped.
//
// When some blocks do not pass, the others are stored all the same and the
// error is an *api.DeltaRefusedError (wrapping api.ErrDeltaRefused) naming
// the refused ones: those whose base is missing, and those that do not
// rebuild to their ID. A base not yet durable (accepted, Accept, and not
// yet committed) is waited for once.
//
// The work is bounded per delta: at most maxChain metadata reads, one
// block read and as many applies of one block.
func (r *Repo) PutDeltas(ctx context.Context, deltas []blockstore.Block) error {
	return r.PutDeltasFor(ctx, "", deltas)
}

// PutDeltasFor is PutDeltas of deltas a user uploads (owner ""; an
// admin's). A delta whose base owner may not read (Unreadable), or whose
// block is present but not readable by owner, counts as lacking its base:
// the user sends the block whole, which proves they hold its bytes. The
// blocks taken owner may read from now on and count against the pending
// quota as AcceptFor's blocks do; a batch that could take owner past it is
// refused whole.
func (r *Repo) PutDeltasFor(ctx context.Context, owner string, deltas []blockstore.Block) error {
	if len(deltas) == 0 {
		return nil
	}
	// A delta is rebuilt into a whole block of at most a block's size.
	if err := r.checkRoom(len(deltas) * blockstore.DefaultBlockSize); err != nil {
		return err
	}
	readable := func(id blockstore.ID) (bool, error) { return true, nil }
	if owner != "" {
		if err := r.pendingRoom(owner, deltas); err != nil {
			return err
		}
		readable = func(id blockstore.ID) (bool, error) {
			no, err := r.Unreadable(ctx, owner, []blockstore.ID{id})
			return len(no) == 0, err
		}
	}
	// Under the commit lock: a collection cannot take a base between the
	// check here and the commit of the delta that needs it.
	r.mu.Lock()
	defer r.mu.Unlock()

	var (
		refused       api.DeltaRefusedError
		ops           []blockstore.MetaOp
		whole         []blockstore.Block
		taken         []blockstore.ID
		settled       bool
		base, rebuilt []byte
		opsBytes      int // of the delta frames in ops
	)
	flush := func() error {
		if len(ops) > 0 {
			if err := r.store.CommitMeta(ctx, ops...); err != nil {
				return fmt.Errorf("storing deltas: %w", err)
			}
		}
		if len(whole) > 0 {
			if err := r.store.Put(ctx, whole...); err != nil {
				return fmt.Errorf("storing compacted deltas: %w", err)
			}
		}
		ops, whole, opsBytes = ops[:0], whole[:0], 0
		return nil
	}
	for _, b := range deltas {
		missing, err := r.Missing(ctx, []blockstore.ID{b.ID})
		if err != nil {
			return err
		}
		d, err := blockstore.ParseDelta(b.Frame)
		if err != nil {
			return fmt.Errorf("block %s: %w", b.ID.Short(), err)
		}
		// Present: skipped, if owner may read it. Else its base must be
		// readable.
		check := d.Base
		if len(missing) == 0 {
			check = b.ID
		}
		ok, err := readable(check)
		if err != nil {
			return err
		}
		if !ok {
			refused.BaseMissing = append(refused.BaseMissing, b.ID)
			continue
		}
		if len(missing) == 0 {
			continue
		}
		var depth int
		base, depth, err = r.rebuild(ctx, d.Base, base[:0])
		if errors.Is(err, blockstore.ErrNotFound) && !settled {
			// The base may be this request's, or an earlier one's, not
			// yet durable: make everything so, once, and look again.
			settled = true
			if err = flush(); err == nil {
				err = r.intake.settle(ctx, r)
			}
			if err != nil {
				return err
			}
			base, depth, err = r.rebuild(ctx, d.Base, base[:0])
		}
		switch {
		case errors.Is(err, blockstore.ErrNotFound):
			refused.BaseMissing = append(refused.BaseMissing, b.ID)
			continue
		case err != nil:
			return fmt.Errorf("block %s: base %s: %w: %v", b.ID.Short(), d.Base.Short(), errStoredBase, err)
		}
		rebuilt, err = d.Apply(rebuilt[:0], base)
		if err == nil {
			err = blockstore.CheckPlain(b.ID, rebuilt)
		}
		if err != nil {
			refused.Mismatch = append(refused.Mismatch, b.ID)
			continue
		}
		if depth >= r.maxDeltaDepth {
			whole = append(whole, blockstore.Block{ID: b.ID, Frame: blockstore.Encode(nil, rebuilt)})
		} else {
			ops = append(ops,
				blockstore.MetaOp{Key: deltaRefKey(b.ID), Value: appendDeltaRef(nil, deltaRef{base: d.Base, depth: depth + 1})},
				blockstore.MetaOp{Key: deltaFrameKey(b.ID), Value: b.Frame})
			opsBytes += len(b.Frame)
		}
		taken = append(taken, b.ID)
		if len(ops) >= 2*deltaChunk || opsBytes >= deltaChunkBytes || len(whole) >= deltaChunk/16 {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	if err := flush(); err != nil {
		return err
	}
	if owner == "" {
		r.uploadedIDs(taken)
	} else {
		// Only verified deltas: a refused one proves nothing.
		byID := make(map[blockstore.ID][]byte, len(deltas))
		for _, b := range deltas {
			byID[b.ID] = b.Frame
		}
		blocks := make([]blockstore.Block, len(taken))
		for i, id := range taken {
			blocks[i] = blockstore.Block{ID: id, Frame: byID[id]}
		}
		// Room was checked above; a race past it by a batch is fine.
		r.recentMu.Lock()
		r.recordLocked(owner, blocks)
		r.recentMu.Unlock()
		if err := r.grant(ctx, owner, taken); err != nil {
			return err
		}
	}
	if len(refused.BaseMissing)+len(refused.Mismatch) > 0 {
		return &refused
	}
	return nil
}
