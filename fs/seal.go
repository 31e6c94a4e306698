package fs

import (
	"context"
	"fmt"
	"io"
	"math/bits"
	"slices"
	"sync/atomic"
)

// SealedEntry is one entry of a sealed clone.
type SealedEntry struct {
	OverlayEntry
	// Dirty lists the blocks with local sectors (indexes into the file)
	// written, copied up, or otherwise changed since the last successful
	// Seal of this clone. After the clone is loaded (mount, remount,
	// crash), every such block counts as dirty once. A block with no
	// local sector is never listed.
	Dirty []int64
	// DirtySectors holds, for each block of Dirty, the mask of its
	// sectors changed since that Seal (bit k: the block's k-th sector of
	// SectorSize bytes); every sector for a block whose length changed.
	// Sectors not in the mask hold what they held at that Seal, unless
	// Shrunk.
	DirtySectors []uint64
	// LocalSectors holds, for each block of Dirty, the mask of its
	// sectors in the data file; the others are the base's (below
	// BaseSize) or zeros.
	LocalSectors []uint64
	// SectorSize is the unit of the masks.
	SectorSize int64
	// Shrunk is set when the file was cut short since that Seal: blocks
	// past the cut may hold other bytes than the masks tell.
	Shrunk bool
}

// Seal captures clone name at one instant. With every change to the clone
// held off (writes, truncates, fallocate/punch, setattr, opens for writing,
// namespace changes; reads and read-only opens go on), it calls fn once with
// every entry (as Overlay lists them: parents first, sorted by path) and a
// SealReader of the regular files' local blocks. fn copies what it needs
// (hashes, frames) and returns; changes resume when fn returns. fn must not
// change the clone itself, nor call Seal or Drop: that would wait for
// itself. If fn returns nil, the dirty marks it was shown are cleared;
// otherwise they all stay, and Seal returns fn's error. The clone is loaded
// if it is not. BlockSize returns the clone's block size for fn's use.
//
// A change in progress when Seal is called finishes first; one that starts
// later waits until fn returns. Syncs (fsync, the periodic flush) go on.
func (fsys *FS) Seal(ctx context.Context, name string, fn func(entries []SealedEntry, r *SealReader) error) error {
	c, err := fsys.freeze(ctx, name)
	if err != nil {
		return err
	}
	defer c.change.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	c.ns.RLock()
	items := c.listLocked()
	c.ns.RUnlock()
	entries := make([]SealedEntry, len(items))
	r := &SealReader{ctx: ctx, name: name, files: make(map[uint64]*cinode)}
	for i, it := range items {
		entries[i] = it.SealedEntry
		if it.Mode.IsRegular() {
			r.files[it.Ino] = it.n
		}
	}
	err = fn(entries, r)
	r.over.Store(true)
	if err != nil {
		return err
	}
	// Nothing changed since the listing: every mark was shown.
	for _, it := range items {
		if it.Mode.IsRegular() {
			it.n.mu.Lock()
			it.n.marks, it.n.reshaped, it.n.shrunk = nil, nil, false
			it.n.mu.Unlock()
		}
	}
	return nil
}

// SealReader reads the local blocks of the clone Seal holds, for Seal's fn:
// its methods may be called from several goroutines at once, until fn
// returns, and fail after.
type SealReader struct {
	ctx   context.Context
	name  string
	files map[uint64]*cinode
	over  atomic.Bool
}

func (r *SealReader) file(ino uint64) (*cinode, error) {
	if r.over.Load() {
		return nil, fmt.Errorf("seal of clone %s: read after fn returned: %w", r.name, ErrInvalid)
	}
	n := r.files[ino]
	if n == nil {
		return nil, fmt.Errorf("seal of clone %s: no regular file with inode %d: %w", r.name, ino, ErrNotExist)
	}
	return n, nil
}

// ReadBlock reads local block `block` of the regular file with inode ino
// into dst: the full block, or the short last block (exactly
// BlockRange-sized by the clone's block size; blocks past Size are not
// asked for), its local sectors from the data file and the others from the
// base. It returns dst resliced to the block's length, or a new slice when
// dst's capacity is too small.
func (r *SealReader) ReadBlock(ino uint64, block int64, dst []byte) ([]byte, error) {
	n, err := r.file(ino)
	if err != nil {
		return nil, err
	}
	return n.readLocal(r.ctx, block, dst)
}

// ReadSectors appends to dst the sectors in mask (bit k: the block's k-th
// sector of SectorSize bytes) of whole block `block` of the regular file
// with inode ino, in the order of the mask's bits, read from the data file
// alone: every sector in mask must be local (the entry's LocalSectors).
// What the other sectors hold is for the caller to know (the base's, by
// the entry's BaseSize and the base manifest).
func (r *SealReader) ReadSectors(ino uint64, block int64, mask uint64, dst []byte) ([]byte, error) {
	n, err := r.file(ino)
	if err != nil {
		return dst, err
	}
	return n.readSectors(block, mask, dst)
}

// freeze returns clone name, loaded, with its changes held off.
func (fsys *FS) freeze(ctx context.Context, name string) (*clone, error) {
	for {
		c, err := fsys.clone(ctx, name)
		if err != nil {
			return nil, err
		}
		c.change.Lock()
		if !c.dropped.Load() {
			return c, nil
		}
		c.change.Unlock() // dropped meanwhile: load it afresh
	}
}

// readLocal reads block bi, which has local sectors, into dst, as
// SealReader.ReadBlock: its local sectors from the data file, the others from the base.
// Changes are held off.
func (n *cinode) readLocal(ctx context.Context, bi int64, dst []byte) ([]byte, error) {
	bs := n.c.bs
	n.mu.Lock()
	size, baseSize, base := n.size, n.baseSize, n.base
	local := bi >= 0 && sectorMask(n.bits.words, bi, bs/n.c.ss) != 0
	n.mu.Unlock()
	if bi < 0 || bi*bs >= size {
		return nil, fmt.Errorf("inode %d: block %d is past the size %d: %w", n.ino, bi, size, ErrInvalid)
	}
	if !local {
		return nil, fmt.Errorf("inode %d: block %d has no local sector: %w", n.ino, bi, ErrInvalid)
	}
	want := min(bs, size-bi*bs)
	if int64(cap(dst)) < want {
		dst = make([]byte, want)
	}
	dst = dst[:want]
	if err := n.readMerged(ctx, dst, bi*bs, baseSize, base); err != nil {
		return nil, fmt.Errorf("inode %d block %d: %w", n.ino, bi, err)
	}
	return dst, nil
}

// BlockSize is the block size of a loaded or loadable clone.
func (fsys *FS) BlockSize(ctx context.Context, name string) (int, error) {
	c, err := fsys.clone(ctx, name)
	if err != nil {
		return 0, err
	}
	return int(c.bs), nil
}

// readSectors is SealReader.ReadSectors. Changes are held off.
func (n *cinode) readSectors(bi int64, mask uint64, dst []byte) ([]byte, error) {
	bs, ss := n.c.bs, n.c.ss
	spb := bs / ss
	n.mu.Lock()
	size := n.size
	local := int64(0) <= bi && spb <= 64 && sectorMask(n.bits.words, bi, spb)&mask == mask
	n.mu.Unlock()
	switch {
	case bi < 0 || (bi+1)*bs > size:
		return dst, fmt.Errorf("inode %d: block %d is not a whole block below the size %d: %w", n.ino, bi, size, ErrInvalid)
	case mask == 0 || spb < 64 && mask>>spb != 0:
		return dst, fmt.Errorf("inode %d block %d: sector mask %x: %w", n.ino, bi, mask, ErrInvalid)
	case !local:
		return dst, fmt.Errorf("inode %d block %d: sectors %x are not all local: %w", n.ino, bi, mask, ErrInvalid)
	}
	f, err := n.file()
	if err != nil {
		return dst, err
	}
	start := len(dst)
	dst = slices.Grow(dst, bits.OnesCount64(mask)*int(ss))
	// Runs of adjacent sectors go in one read each.
	for m := mask; m != 0; {
		first := bits.TrailingZeros64(m)
		run := bits.TrailingZeros64(^(m >> first))
		at := len(dst)
		dst = dst[:at+run*int(ss)]
		k, err := f.ReadAt(dst[at:], bi*bs+int64(first)*ss)
		if err != nil && err != io.EOF {
			return dst[:start], fmt.Errorf("inode %d block %d: %w", n.ino, bi, err)
		}
		clear(dst[at+k:]) // past the data file's end: zeros, as readMerged reads them
		if first+run >= 64 {
			break
		}
		m &^= (1<<run - 1) << first
	}
	return dst, nil
}
