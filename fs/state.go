package fs

import (
	"context"
	iofs "io/fs"
	"path"
	"slices"
	"strings"
	"time"
)

// OverlayEntry is one entry of a clone as this workstation has it: what a
// later upload of the clone's changes (a new generation) starts from.
type OverlayEntry struct {
	// Path is the entry's current path in the clone, slash-separated.
	Path string
	// Ino is the overlay's inode number: stable across renames and
	// remounts, and the name of the data file (DataPath). Hard links are
	// entries with the same Ino.
	Ino uint64
	// Mode holds the type and permission bits.
	Mode iofs.FileMode
	// MTime is the modification time, ATime the access time.
	MTime, ATime time.Time
	// Owner owns the entry, as the server numbers users (stored IDs).
	Owner Owner
	// Rdev is a device node's device number.
	Rdev uint64
	// Target is a symlink's target.
	Target string
	// Size is a regular file's length.
	Size int64
	// BasePath is the base manifest's file a regular file started as; ""
	// for a file made in the clone.
	BasePath string
	// BaseSize: base data at or past this offset reads as zeros.
	BaseSize int64
	// Local is the bitmap of the blocks with sectors in the data file:
	// block i has some when bit i%64 of Local[i/64] is set. Sectors not
	// in the data file are the base file's below BaseSize, and zeros
	// after.
	Local []uint64
	// Changes counts the changes made to the entry since the clone was
	// loaded; two snapshots with equal Changes saw the same content.
	Changes uint64
}

// Overlay lists every entry of clone name (loading it if needed), parents
// before children, sorted by path. Blocks of a file are read through the
// mounted tree as usual.
func (fsys *FS) Overlay(ctx context.Context, name string) ([]OverlayEntry, error) {
	c, err := fsys.clone(ctx, name)
	if err != nil {
		return nil, err
	}
	c.ns.RLock()
	items := c.listLocked()
	c.ns.RUnlock()
	out := make([]OverlayEntry, len(items))
	for i, it := range items {
		out[i] = it.OverlayEntry
	}
	return out, nil
}

// listed is an entry as listLocked lists it.
type listed struct {
	SealedEntry
	n *cinode
}

// listLocked lists every entry of c, sorted by path, with its inode and
// its local blocks changed since the last Seal; c.ns is held.
func (c *clone) listLocked() []listed {
	var out []listed
	var walk func(dir *cinode, prefix string)
	walk = func(dir *cinode, prefix string) {
		for name, n := range dir.children {
			p := path.Join(prefix, name)
			n.mu.Lock()
			e := listed{n: n, SealedEntry: SealedEntry{OverlayEntry: OverlayEntry{
				Path: p, Ino: n.ino, Mode: n.mode, MTime: n.mtime, ATime: n.atime,
				Owner: n.owner, Rdev: n.rdev, Target: n.target,
				Size: n.size, BasePath: n.basePath, BaseSize: n.baseSize,
				Local: blockWords(n.bits.words, c.bs/c.ss), Changes: n.changes,
			}}}
			if n.mode.IsRegular() {
				e.SectorSize = c.ss
				e.Shrunk = n.shrunk
				e.Dirty, e.DirtySectors, e.LocalSectors = n.dirtyLocked()
			}
			n.mu.Unlock()
			if !e.Mode.IsRegular() {
				e.Size = 0
			}
			out = append(out, e)
			if n.mode.IsDir() {
				walk(n, p)
			}
		}
	}
	walk(c.root, "")
	slices.SortFunc(out, func(a, b listed) int { return strings.Compare(a.Path, b.Path) })
	return out
}

// dirtyLocked lists the blocks with local sectors that changed since the
// last Seal, for each the mask of its sectors written since (all of them
// for a block whose length changed), and the mask of its local sectors;
// n.mu is held.
func (n *cinode) dirtyLocked() (blocks []int64, masks, locals []uint64) {
	bs, spb := n.c.bs, n.c.bs/n.c.ss
	nb := (n.size + bs - 1) / bs
	all := ^uint64(0)
	if spb < 64 {
		all = 1<<spb - 1
	}
	add := func(bi int64, m, local uint64) {
		if k := len(blocks); k > 0 && blocks[k-1] == bi {
			masks[k-1] |= m
			return
		}
		blocks = append(blocks, bi)
		masks = append(masks, m)
		locals = append(locals, local)
	}
	// Blocks with marked sectors, and reshaped blocks, in order.
	lastMark := min(nb, (int64(len(n.marks))*64+spb-1)/spb)
	lastShape := min(nb, int64(len(n.reshaped))*64)
	for bi := range max(lastMark, lastShape) {
		local := sectorMask(n.bits.words, bi, spb)
		if local == 0 {
			continue
		}
		if m := sectorMask(n.marks, bi, spb) & local; m != 0 {
			add(bi, m, local)
		}
		if n.reshaped.has(bi) {
			add(bi, all, local)
		}
	}
	return blocks, masks, locals
}

// DataPath is the local data file of inode ino of clone name.
func (fsys *FS) DataPath(cloneName string, ino uint64) string {
	return (&clone{dir: fsys.cloneDir(cloneName)}).dataPath(ino)
}
