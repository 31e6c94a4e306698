package fs

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
)

// The overlay of a regular file of a clone.
//
// Reading block i: when bit i is set the block is in the data file;
// otherwise it is the base file's block, as far as baseSize, and zeros
// after. The data file's bytes of a block whose bit is clear are never
// read, so they may be anything: the leftovers of a write that failed
// half-way (ENOSPC) or that a crash kept from being committed.
//
// Writing block i: when bit i is set, the write goes to the data file.
// Otherwise the block is copied up: its current content (base or zeros)
// with the write laid over it is written to the data file whole, and only
// then is bit i set. A write that covers the whole block skips the base.
// So a block is either all old or all new, however a write fails.
//
// Past the file's size the data file holds zeros (a shrink truncates it),
// so extending a file reads zeros, never old data.
//
// Durability (sync, on fsync, release, the periodic flush and Close):
// fdatasync the data file (and fsync its directory the first time), then
// commit the inode record and the changed bitmap chunks in one CommitMeta.
// A bit reaches Meta only after its block's data is on disk. After a
// crash, load cuts each data file back to the committed size.

// isLocal reports whether block bi is in the data file.
func (n *cinode) isLocal(bi int64) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.bits.get(bi)
}

// file returns the data file, opening (and creating) it the first time.
func (n *cinode) file() (dataFile, error) {
	n.fileMu.Lock()
	defer n.fileMu.Unlock()
	if n.data == nil {
		f, err := n.c.fsys.openData(n.c.dataPath(n.ino))
		if err != nil {
			return nil, err
		}
		n.data, n.created = f, true
	}
	return n.data, nil
}

// openedFile returns the data file if it is open.
func (n *cinode) openedFile() dataFile {
	n.fileMu.Lock()
	defer n.fileMu.Unlock()
	return n.data
}

func (n *cinode) readAt(ctx context.Context, p []byte, off int64, ra *readAhead) (int, error) {
	if off < 0 {
		return 0, ErrInvalid
	}
	n.rw.RLock()
	defer n.rw.RUnlock()
	n.mu.Lock()
	size, baseSize, base := n.size, n.baseSize, n.base
	n.mu.Unlock()
	if off >= size {
		return 0, nil
	}
	p = p[:min(int64(len(p)), size-off)]
	end := off + int64(len(p))
	bs := n.c.bs
	fsys := n.c.fsys
	fsys.readAheadBase(ra, bs, base, off, int64(len(p)), baseSize, n.isLocal)
	for pos := off; pos < end; {
		local := n.isLocal(pos / bs)
		next := min(end, (pos/bs+1)*bs)
		for next < end && n.isLocal(next/bs) == local {
			next = min(end, next+bs)
		}
		chunk := p[pos-off : next-off]
		if local {
			f, err := n.file()
			if err != nil {
				return 0, err
			}
			k, err := f.ReadAt(chunk, pos)
			if err != nil && err != io.EOF {
				return 0, err
			}
			clear(chunk[k:])
		} else if err := fsys.readBase(ctx, bs, base, chunk, pos, baseSize); err != nil {
			return 0, err
		}
		pos = next
	}
	return len(p), nil
}

func (n *cinode) writeAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrInvalid
	}
	if off+int64(len(p)) > MaxFileSize {
		return 0, ErrTooLarge
	}
	n.rw.RLock()
	defer n.rw.RUnlock()
	return n.writeLocked(ctx, p, off)
}

// writeLocked writes p at off; n.rw is held, shared or alone. It returns
// how many bytes were written before an error, a whole number of blocks'
// worth from off.
func (n *cinode) writeLocked(ctx context.Context, p []byte, off int64) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	f, err := n.file()
	if err != nil {
		return 0, err
	}
	bs := n.c.bs
	end := off + int64(len(p))
	for pos := off; pos < end; {
		bi := pos / bs
		next := min(end, (bi+1)*bs)
		if n.isLocal(bi) {
			for next < end && n.isLocal(next/bs) {
				next = min(end, next+bs)
			}
			if _, err := f.WriteAt(p[pos-off:next-off], pos); err != nil {
				return int(pos - off), err
			}
			n.wrote(-1, pos, next)
		} else if err := n.copyUp(ctx, f, bi, p[pos-off:next-off], pos); err != nil {
			return int(pos - off), err
		}
		pos = next
	}
	return len(p), nil
}

var blockPool sync.Pool

// copyUp writes part at pos into block bi, which is not local (as seen
// without its stripe lock): the block's content with part laid over it
// goes to the data file whole, then bit bi is set.
func (n *cinode) copyUp(ctx context.Context, f dataFile, bi int64, part []byte, pos int64) error {
	s := &n.stripes[bi%int64(len(n.stripes))]
	s.Lock()
	defer s.Unlock()
	if n.isLocal(bi) { // another writer copied it up meanwhile
		if _, err := f.WriteAt(part, pos); err != nil {
			return err
		}
		n.wrote(-1, pos, pos+int64(len(part)))
		return nil
	}
	bs := n.c.bs
	start := bi * bs
	block := part
	if int64(len(part)) != bs {
		bp, _ := blockPool.Get().(*[]byte)
		if bp == nil || int64(len(*bp)) != bs {
			b := make([]byte, bs)
			bp = &b
		}
		defer blockPool.Put(bp)
		block = *bp
		n.mu.Lock()
		baseSize, base := n.baseSize, n.base
		n.mu.Unlock()
		if err := n.c.fsys.readBase(ctx, bs, base, block, start, baseSize); err != nil {
			return err
		}
		copy(block[pos-start:], part)
	}
	if _, err := f.WriteAt(block, start); err != nil {
		return err
	}
	n.wrote(bi, pos, pos+int64(len(part)))
	return nil
}

// wrote records a write of [start, end), within local blocks or, when
// bi >= 0, making block bi local.
func (n *cinode) wrote(bi, start, end int64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if bi >= 0 {
		n.bits.set(bi)
	}
	bs := n.c.bs
	for b := start / bs; b*bs < end; b++ {
		n.marks.add(b)
	}
	n.setSizeLocked(max(n.size, end))
	n.mtime = time.Now()
	n.ctime = n.mtime
	n.setDirtyLocked()
}

// setSizeLocked sets the size; n.mu is held. A local block that the old
// or the new size cuts short changes content (it ends elsewhere), so it
// is marked for the next Seal.
func (n *cinode) setSizeLocked(size int64) {
	if edge := min(n.size, size); size != n.size && edge%n.c.bs != 0 && n.bits.get(edge/n.c.bs) {
		n.marks.add(edge / n.c.bs)
	}
	n.size = size
}

// truncate sets the size. A shrink is committed at once, before the data
// file is cut, so a crash cannot leave the old size over a shorter file.
func (n *cinode) truncate(ctx context.Context, size int64) error {
	if size < 0 {
		return ErrInvalid
	}
	if size > MaxFileSize {
		return ErrTooLarge
	}
	n.rw.Lock()
	defer n.rw.Unlock()
	bs := n.c.bs
	n.mu.Lock()
	shrink := size < n.size
	if shrink {
		n.bits.clearFrom((size + bs - 1) / bs)
		n.marks.clearFrom((size + bs - 1) / bs)
	}
	n.setSizeLocked(size)
	n.baseSize = min(n.baseSize, size)
	n.mtime = time.Now()
	n.ctime = n.mtime
	n.setDirtyLocked()
	n.mu.Unlock()
	if !shrink {
		return nil
	}
	err := n.sync(ctx)
	// Cut the data file even when the commit failed: what lies past the
	// new size must read as zeros if the file grows again.
	if f := n.openedFile(); f != nil {
		err = errors.Join(err, f.Truncate(size))
	} else if _, serr := os.Stat(n.c.dataPath(n.ino)); serr == nil {
		err = errors.Join(err, os.Truncate(n.c.dataPath(n.ino), size))
	}
	return err
}

// allocate is fallocate(2).
func (n *cinode) allocate(ctx context.Context, off, length int64, mode AllocMode) error {
	if off < 0 || length <= 0 {
		return ErrInvalid
	}
	end := off + length
	if end > MaxFileSize || end < off {
		return ErrTooLarge
	}
	keep := mode&AllocKeepSize != 0
	switch mode &^ AllocKeepSize {
	case 0:
		if keep {
			return nil
		}
		// Nothing to reserve: the overlay takes space as blocks are
		// copied up. Only the size changes.
		n.rw.Lock()
		n.mu.Lock()
		if end > n.size {
			n.setSizeLocked(end)
			n.ctime = time.Now()
			n.setDirtyLocked()
		}
		n.mu.Unlock()
		n.rw.Unlock()
		return nil
	case AllocPunchHole:
		if !keep {
			return fmt.Errorf("punch hole without keep size: %w", ErrNotSupported)
		}
		return n.zero(ctx, off, end, true)
	case AllocZeroRange:
		return n.zero(ctx, off, end, keep)
	}
	return fmt.Errorf("fallocate mode %#x: %w", uint32(mode), ErrNotSupported)
}

// zero makes [off, end) read as zeros, growing the file unless keep. Whole
// blocks are punched in the data file and marked local (so the base does
// not show through); partial ones are written with zeros.
func (n *cinode) zero(ctx context.Context, off, end int64, keep bool) error {
	n.rw.Lock()
	defer n.rw.Unlock()
	bs := n.c.bs
	n.mu.Lock()
	size := n.size
	n.mu.Unlock()
	if keep {
		end = min(end, size)
	}
	if off >= end {
		return nil
	}
	first, last := (off+bs-1)/bs, end/bs // whole blocks [first, last)
	if first >= last {
		_, err := n.writeLocked(ctx, make([]byte, end-off), off)
		return err
	}
	if head := first * bs; off < head {
		if _, err := n.writeLocked(ctx, make([]byte, head-off), off); err != nil {
			return err
		}
	}
	if tail := last * bs; tail < end {
		if _, err := n.writeLocked(ctx, make([]byte, end-tail), tail); err != nil {
			return err
		}
	}
	f, err := n.file()
	if err != nil {
		return err
	}
	if err := f.Punch(first*bs, (last-first)*bs); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for bi := first; bi < last; bi++ {
		if bi*bs < n.baseSize {
			n.bits.set(bi)
		}
		if n.bits.get(bi) {
			n.marks.add(bi)
		}
	}
	n.setSizeLocked(max(n.size, end))
	n.mtime = time.Now()
	n.ctime = n.mtime
	n.setDirtyLocked()
	return nil
}

// sync makes n durable: data file first, then its record and bitmap.
func (n *cinode) sync(ctx context.Context) error {
	n.syncMu.Lock()
	defer n.syncMu.Unlock()
	n.mu.Lock()
	if n.gone || !n.dirty {
		n.mu.Unlock()
		return nil
	}
	rec := n.recordLocked()
	chunks := n.bits.takeDirty()
	n.dirty = false
	n.mu.Unlock()

	err := n.syncData()
	if err == nil {
		ops := make([]blockstore.MetaOp, 0, 1+len(chunks))
		ops = append(ops, blockstore.MetaOp{Key: n.c.inodeKey(n.ino), Value: rec.marshal()})
		for _, ch := range chunks {
			ops = append(ops, blockstore.MetaOp{Key: n.c.chunkKey(n.ino, ch.idx), Value: ch.data})
		}
		err = n.c.fsys.cfg.Meta.CommitMeta(ctx, ops...)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if err != nil {
		n.bits.untake(chunks)
		n.setDirtyLocked()
		return fmt.Errorf("sync inode %d: %w", n.ino, err)
	}
	n.bits.committed(chunks)
	return nil
}

// syncData makes the data file's content, and its name, durable.
func (n *cinode) syncData() error {
	n.fileMu.Lock()
	f, created := n.data, n.created
	n.fileMu.Unlock()
	if f == nil {
		return nil
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if created {
		if err := diskio.SyncDir(n.c.dir); err != nil {
			return err
		}
		n.fileMu.Lock()
		n.created = false
		n.fileMu.Unlock()
	}
	return nil
}

// discard closes and removes the data file of an inode that is gone and
// no longer open.
func (n *cinode) discard() error {
	n.c.ns.Lock()
	delete(n.c.inodes, n.ino)
	n.c.ns.Unlock()
	n.rw.Lock()
	defer n.rw.Unlock()
	n.fileMu.Lock()
	defer n.fileMu.Unlock()
	var err error
	if n.data != nil {
		err = n.data.Close()
		n.data = nil
	}
	if rerr := os.Remove(n.c.dataPath(n.ino)); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
		err = errors.Join(err, rerr)
	}
	return err
}
