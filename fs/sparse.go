package fs

import (
	"context"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// extents tells where a regular file's data and holes are. Data is what
// the file holds other than zeros it never wrote: a clone's local sectors
// (written, even with zeros, as a local disk allocates them), and the
// base's blocks that are not holes, below baseSize. Everything else reads
// as zeros without being stored anywhere: a hole.
type extents struct {
	size, baseSize, bs int64
	base               *manifest.File // nil: no base data
	// local reports whether the byte at pos is in a local sector and where
	// (at most limit) the run like it ends; nil: nothing is local.
	local func(pos, limit int64) (bool, int64)
	// localData finds in the local data file, within a local run [pos,
	// end), where data (hole false) or a hole (hole true) begins, or end
	// when none does: a punched sector is local and a hole. nil: every
	// local sector is data.
	localData func(pos, end int64, hole bool) int64
}

// seek returns the first offset at or past off, below the size, where
// data (hole false) or a hole (hole true) begins. A file ends in a hole at
// its size; ok is false only when data is sought and none follows.
func (x extents) seek(off int64, hole bool) (int64, bool) {
	for pos := max(off, 0); pos < x.size; {
		local, end := false, x.size
		if x.local != nil {
			local, end = x.local(pos, x.size)
		}
		if local {
			at := end
			switch {
			case x.localData != nil:
				at = x.localData(pos, end, hole)
			case !hole:
				at = pos
			}
			if at < end {
				return at, true
			}
			pos = end
			continue
		}
		// Not local up to end: data where the base has a block.
		for pos < end {
			if pos >= x.baseSize || x.base == nil {
				if hole {
					return pos, true
				}
				pos = end
				break
			}
			bi := pos / x.bs
			next := min((bi+1)*x.bs, end, x.baseSize)
			data := bi < int64(len(x.base.Blocks)) && !x.base.Blocks[bi].IsHole()
			if data != hole {
				return pos, true
			}
			pos = next
		}
	}
	if hole {
		return x.size, true
	}
	return 0, false
}

// allocated returns how many bytes of the file are data.
func (x extents) allocated() int64 {
	var n int64
	for pos := int64(0); ; {
		d, ok := x.seek(pos, false)
		if !ok {
			return n
		}
		h, _ := x.seek(d, true)
		n += h - d
		pos = h
	}
}

// seekData implements Seeker over x.
func (x extents) seekData(off int64, hole bool) (int64, error) {
	if off < 0 {
		return 0, ErrInvalid
	}
	if off >= x.size {
		return 0, fmt.Errorf("offset %d at or past the end (%d): %w", off, x.size, ErrNoData)
	}
	at, ok := x.seek(off, hole)
	if !ok {
		return 0, fmt.Errorf("no data at or past %d: %w", off, ErrNoData)
	}
	return at, nil
}

// extentsLocked returns n's extents over its data file f (nil: not
// open, and every local sector counts as data); n.mu is held for as long
// as they are used.
func (n *cinode) extentsLocked(f dataFile) extents {
	ss := n.c.ss
	x := extents{size: n.size, baseSize: n.baseSize, bs: n.c.bs, base: n.base,
		local: func(pos, limit int64) (bool, int64) {
			local, end := n.bits.run(pos/ss, (limit+ss-1)/ss)
			return local, min(limit, end*ss)
		}}
	if f != nil {
		x.localData = func(pos, end int64, hole bool) int64 {
			at, ok, err := f.SeekData(pos, hole)
			switch {
			case err != nil:
				// The disk cannot tell: data, as a local sector is.
				if hole {
					return end
				}
				return pos
			case !ok && hole:
				return pos // past the data file's end: zeros
			case !ok:
				return end
			}
			return min(max(at, pos), end)
		}
	}
	return x
}

// dataForExtents returns n's data file for the extents' walk: open when
// any sector is local (a punched one is a hole in it). n.mu is not held.
func (n *cinode) dataForExtents() dataFile {
	if f := n.openedFile(); f != nil {
		return f
	}
	n.mu.Lock()
	local := n.bits.count() > 0
	n.mu.Unlock()
	if !local {
		return nil
	}
	f, err := n.file()
	if err != nil {
		return nil // every local sector counts as data
	}
	return f
}

// allocatedLocked returns the bytes of n that are data, from a cache kept
// until n changes: a large clone disk takes a walk of its blocks. n.mu is
// held.
func (n *cinode) allocatedLocked(f dataFile) int64 {
	key := allocKey{changes: n.changes, size: n.size, baseSize: n.baseSize, base: n.base, file: f != nil}
	if !n.allocValid || n.allocKey != key {
		n.alloc, n.allocKey, n.allocValid = n.extentsLocked(f).allocated(), key, true
	}
	return n.alloc
}

// allocKey is what n's allocated bytes depend on besides its bitmap, whose
// every change counts in changes.
type allocKey struct {
	changes        uint64
	size, baseSize int64
	base           *manifest.File
	file           bool // the data file was asked
}

func (f *cloneFile) SeekData(ctx context.Context, off int64, hole bool) (int64, error) {
	df := f.n.dataForExtents()
	f.n.mu.Lock()
	defer f.n.mu.Unlock()
	return f.n.extentsLocked(df).seekData(off, hole)
}

func (f *tmplFile) SeekData(ctx context.Context, off int64, hole bool) (int64, error) {
	m := f.file()
	return extents{size: m.Size, baseSize: m.Size, bs: f.v.bs, base: m}.seekData(off, hole)
}
