package writeback

import (
	"context"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// known remembers the IDs of a clone's local blocks as last sealed, so a
// seal reads only the blocks written since. After a restart it is empty
// and the filesystem reports every local block dirty once.
type known map[uint64][]idOK

type idOK struct {
	id blockstore.ID
	ok bool
}

// seal captures the clone and returns its tree as a manifest; the blocks no
// earlier seal made are in the outbox (durably) before it returns.
func (c *cloneWB) seal(ctx context.Context) (*manifest.Manifest, []blockstore.ID, error) {
	var m *manifest.Manifest
	var outbox []blockstore.ID
	var next known
	err := c.w.cfg.Overlay.Seal(ctx, c.name, func(entries []Entry, read func(uint64, int64, []byte) ([]byte, error)) error {
		var err error
		var blocks []blockstore.Block
		m, blocks, next, err = c.build(ctx, entries, read)
		if err != nil {
			return err
		}
		// Into the outbox, synced, while writes wait: the dirty marks
		// clear when this returns.
		if len(blocks) > 0 {
			if err := c.w.cfg.Store.Put(ctx, blocks...); err != nil {
				return fmt.Errorf("outbox: %w", err)
			}
		}
		for _, b := range blocks {
			outbox = append(outbox, b.ID)
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	c.known = next
	return m, outbox, nil
}

// build makes the manifest of the sealed entries.
func (c *cloneWB) build(ctx context.Context, entries []Entry, read func(uint64, int64, []byte) ([]byte, error)) (*manifest.Manifest, []blockstore.Block, known, error) {
	base := c.base
	bs := int64(base.BlockSize)
	m := &manifest.Manifest{Kind: manifest.KindClone, Name: c.name, BlockSize: base.BlockSize}
	next := make(known, len(entries))
	var out []blockstore.Block
	seen := make(map[blockstore.ID]bool)
	add := func(plain []byte) blockstore.ID {
		if blockstore.IsZero(plain) {
			return blockstore.Hole
		}
		id := blockstore.Sum(plain)
		if !seen[id] {
			seen[id] = true
			out = append(out, blockstore.Block{ID: id, Frame: blockstore.Encode(nil, plain)})
		}
		return id
	}
	buf := make([]byte, 0, bs)
	for i := range entries {
		e := &entries[i]
		f := manifest.File{Path: e.Path, Mode: e.Mode, MTime: e.MTime, Target: e.Target}
		if !e.Mode.IsRegular() {
			m.Files = append(m.Files, f)
			continue
		}
		f.Size = e.Size
		n := (e.Size + bs - 1) / bs
		f.Blocks = make([]blockstore.ID, n)
		var bf *manifest.File
		if e.BasePath != "" {
			bf, _ = base.Lookup(e.BasePath)
			if bf != nil && !bf.Mode.IsRegular() {
				bf = nil
			}
		}
		dirty := make(map[int64]bool, len(e.Dirty))
		for _, d := range e.Dirty {
			dirty[d] = true
		}
		prev := c.known[e.Ino]
		ids := make([]idOK, n)
		for b := range n {
			off := b * bs
			l := min(bs, e.Size-off)
			if e.local(b) {
				if !dirty[b] && b < int64(len(prev)) && prev[b].ok {
					ids[b] = prev[b]
				} else {
					p, err := read(e.Ino, b, buf[:0])
					if err != nil {
						return nil, nil, nil, fmt.Errorf("%s block %d: %w", e.Path, b, err)
					}
					if int64(len(p)) != l {
						return nil, nil, nil, fmt.Errorf("%s block %d: read %d bytes, want %d", e.Path, b, len(p), l)
					}
					ids[b] = idOK{add(p), true}
				}
				f.Blocks[b] = ids[b].id
				continue
			}
			id, err := c.baseBlock(ctx, bf, e.BaseSize, b, l, add)
			if err != nil {
				return nil, nil, nil, fmt.Errorf("%s block %d: %w", e.Path, b, err)
			}
			f.Blocks[b] = id
		}
		next[e.Ino] = ids
		m.Files = append(m.Files, f)
	}
	return m, out, next, nil
}

// baseBlock returns the ID of block b (l bytes) of a file whose block is not
// local: the base file's block when it is whole and unchanged, else a block
// rebuilt from the base's bytes below baseSize and zeros.
func (c *cloneWB) baseBlock(ctx context.Context, bf *manifest.File, baseSize, b, l int64, add func([]byte) blockstore.ID) (blockstore.ID, error) {
	bs := int64(c.base.BlockSize)
	off := b * bs
	if bf == nil || off >= baseSize || b >= int64(len(bf.Blocks)) {
		return blockstore.Hole, nil
	}
	have := min(l, baseSize-off, bf.Size-off)
	baseLen := min(bs, bf.Size-off)
	id := bf.Blocks[b]
	if have == l && baseLen == l {
		return id, nil
	}
	if id.IsHole() {
		return blockstore.Hole, nil
	}
	p, err := c.w.cfg.Blocks.ReadBlock(ctx, id, nil)
	if err != nil {
		return blockstore.Hole, err
	}
	block := make([]byte, l)
	copy(block, p[:have])
	return add(block), nil
}

// sameTree reports whether two manifests describe the same tree.
func sameTree(a, b *manifest.Manifest) bool {
	if a == nil || b == nil || len(a.Files) != len(b.Files) {
		return false
	}
	for i := range a.Files {
		x, y := &a.Files[i], &b.Files[i]
		if x.Path != y.Path || x.Mode != y.Mode || x.Size != y.Size || x.Target != y.Target ||
			!x.MTime.Equal(y.MTime) || len(x.Blocks) != len(y.Blocks) {
			return false
		}
		for j := range x.Blocks {
			if x.Blocks[j] != y.Blocks[j] {
				return false
			}
		}
	}
	return true
}
