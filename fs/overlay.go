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
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// The overlay of a regular file of a clone, at sector granularity
// (sectorSize: 4 KiB for 64 KiB blocks).
//
// Reading sector i: when bit i is set the sector is in the data file;
// otherwise it is the base file's, as far as baseSize, and zeros after.
// The data file's bytes of a sector whose bit is clear are never read, so
// they may be anything: the leftovers of a write that failed half-way
// (ENOSPC) or that a crash kept from being committed.
//
// Writing: whole sectors go to the data file as they are, then their bits
// are set; nothing of the base is read or copied (qcow2's subclusters do
// the same for its 64 KiB clusters). A write that covers only part of a
// sector whose bit is clear copies that sector up: its current content
// (base or zeros) with the write laid over it goes to the data file
// whole, then its bit is set. So a sector is either all old or all new,
// however a write fails.
//
// Past the file's size the data file holds zeros (a shrink truncates it),
// so extending a file reads zeros, never old data.
//
// Durability (sync, on fsync, release, the periodic flush and Close):
// fdatasync the data file (and fsync its directory the first time), then
// commit the inode record and the changed bitmap chunks in one CommitMeta.
// A bit reaches Meta only after its sector's data is on disk. After a
// crash, load cuts each data file back to the committed size.

// blockLocal reports whether every sector of block bi is in the data file.
func (n *cinode) blockLocal(bi int64) bool {
	spb := n.c.bs / n.c.ss
	n.mu.Lock()
	defer n.mu.Unlock()
	set, end := n.bits.run(bi*spb, (bi+1)*spb)
	return set && end == (bi+1)*spb
}

// localRun reports whether the sector at byte pos is local, and where
// (in bytes, at most limit) the run of sectors like it ends.
func (n *cinode) localRun(pos, limit int64) (bool, int64) {
	ss := n.c.ss
	n.mu.Lock()
	local, end := n.bits.run(pos/ss, (limit+ss-1)/ss)
	n.mu.Unlock()
	return local, min(limit, end*ss)
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
	n.c.fsys.readAheadBase(ra, n.c.bs, base, off, int64(len(p)), baseSize, n.blockLocal)
	if err := n.readMerged(ctx, p, off, baseSize, base); err != nil {
		return 0, err
	}
	return len(p), nil
}

// readMerged reads p at off (below the size): local sectors from the data
// file, the others from the base. n.rw is held, or changes are held off.
func (n *cinode) readMerged(ctx context.Context, p []byte, off, baseSize int64, base *manifest.File) error {
	end := off + int64(len(p))
	for pos := off; pos < end; {
		local, next := n.localRun(pos, end)
		chunk := p[pos-off : next-off]
		if local {
			f, err := n.file()
			if err != nil {
				return err
			}
			k, err := f.ReadAt(chunk, pos)
			if err != nil && err != io.EOF {
				return err
			}
			clear(chunk[k:])
		} else if err := n.c.fsys.readBase(ctx, n.c.bs, base, chunk, pos, baseSize); err != nil {
			return err
		}
		pos = next
	}
	return nil
}

func (n *cinode) writeAt(ctx context.Context, p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, ErrInvalid
	}
	if off+int64(len(p)) > n.c.maxSize() {
		return 0, ErrTooLarge
	}
	if err := n.c.fsys.checkSpace(); err != nil {
		return 0, err
	}
	n.rw.RLock()
	defer n.rw.RUnlock()
	return n.writeLocked(ctx, p, off)
}

// writeLocked writes p at off; n.rw is held, shared or alone. It returns
// how many bytes were written before an error.
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
		local, next := n.localRun(pos, end)
		if local {
			// Sectors already local: straight to the data file.
			if _, err := f.WriteAt(p[pos-off:next-off], pos); err != nil {
				return int(pos - off), err
			}
			n.wrote(pos, next, false)
			pos = next
			continue
		}
		next = min(end, (pos/bs+1)*bs)
		if err := n.writeSectors(ctx, f, p[pos-off:next-off], pos); err != nil {
			return int(pos - off), err
		}
		pos = next
	}
	return len(p), nil
}

var blockPool sync.Pool

// writeSectors writes part at pos, within one block some of whose sectors
// are not local (as seen without the block's stripe lock). A head or tail
// sector that part covers only in part and that is not local is copied
// up: read (base or zeros), laid under part, and written whole. Local
// sectors are written only where part covers them, so a write into
// another part of such a sector, running at the same time, is kept.
func (n *cinode) writeSectors(ctx context.Context, f dataFile, part []byte, pos int64) error {
	bs, ss := n.c.bs, n.c.ss
	s := &n.stripes[(pos/bs)%int64(len(n.stripes))]
	s.Lock()
	defer s.Unlock()
	end := pos + int64(len(part))
	from, to := pos, end // the bytes to write
	n.mu.Lock()
	baseSize, base := n.baseSize, n.base
	if pos%ss != 0 && !n.bits.get(pos/ss) {
		from = pos / ss * ss
	}
	if end%ss != 0 && !n.bits.get(end/ss) {
		to = min((end/ss+1)*ss, (pos/bs+1)*bs)
	}
	n.mu.Unlock()
	buf := part
	if from != pos || to != end {
		bp, _ := blockPool.Get().(*[]byte)
		if bp == nil || int64(len(*bp)) < bs {
			b := make([]byte, bs)
			bp = &b
		}
		defer blockPool.Put(bp)
		buf = (*bp)[:to-from]
		if from != pos {
			if err := n.c.fsys.readBase(ctx, bs, base, buf[:ss], from, baseSize); err != nil {
				return err
			}
		}
		if t := (end / ss) * ss; to != end && (t != from || from == pos) {
			if err := n.c.fsys.readBase(ctx, bs, base, buf[t-from:to-from], t, baseSize); err != nil {
				return err
			}
		}
		copy(buf[pos-from:], part)
	}
	if _, err := f.WriteAt(buf, from); err != nil {
		return err
	}
	n.wrote(pos, end, true)
	return nil
}

// wrote records a write of [start, end); local: its sectors are in the
// data file now (those it covers in part were local already or copied up).
func (n *cinode) wrote(start, end int64, local bool) {
	ss := n.c.ss
	first, last := start/ss, (end+ss-1)/ss
	n.mu.Lock()
	defer n.mu.Unlock()
	if local {
		n.bits.setRange(first, last)
	}
	n.marks.addRange(first, last)
	n.setSizeLocked(max(n.size, end))
	n.mtime = time.Now()
	n.ctime = n.mtime
	n.setDirtyLocked()
}

// setSizeLocked sets the size; n.mu is held. A block that the old or the
// new size cuts short changes length, so it is noted for the next Seal.
func (n *cinode) setSizeLocked(size int64) {
	if edge := min(n.size, size); size != n.size && edge%n.c.bs != 0 {
		n.reshaped.add(edge / n.c.bs)
	}
	n.size = size
}

// truncate sets the size. A shrink is committed at once, before the data
// file is cut, so a crash cannot leave the old size over a shorter file.
func (n *cinode) truncate(ctx context.Context, size int64) error {
	if size < 0 {
		return ErrInvalid
	}
	if size > n.c.maxSize() {
		return ErrTooLarge
	}
	n.rw.Lock()
	defer n.rw.Unlock()
	ss := n.c.ss
	n.mu.Lock()
	shrink := size < n.size
	if shrink {
		n.bits.clearFrom((size + ss - 1) / ss)
		n.marks.clearFrom((size + ss - 1) / ss)
		n.shrunk = true
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
	if end > n.c.maxSize() || end < off {
		return ErrTooLarge
	}
	if err := n.c.fsys.checkSpace(); err != nil {
		return err
	}
	keep := mode&AllocKeepSize != 0
	switch mode &^ AllocKeepSize {
	case 0:
		if keep {
			return nil
		}
		// Nothing to reserve: the overlay takes space as sectors are
		// written. Only the size changes.
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
// sectors are punched in the data file and marked local (so the base does
// not show through); partial ones are written with zeros.
func (n *cinode) zero(ctx context.Context, off, end int64, keep bool) error {
	n.rw.Lock()
	defer n.rw.Unlock()
	ss := n.c.ss
	n.mu.Lock()
	size := n.size
	n.mu.Unlock()
	if keep {
		end = min(end, size)
	}
	if off >= end {
		return nil
	}
	first, last := (off+ss-1)/ss, end/ss // whole sectors [first, last)
	if first >= last {
		_, err := n.writeLocked(ctx, make([]byte, end-off), off)
		return err
	}
	if head := first * ss; off < head {
		if _, err := n.writeLocked(ctx, make([]byte, head-off), off); err != nil {
			return err
		}
	}
	if tail := last * ss; tail < end {
		if _, err := n.writeLocked(ctx, make([]byte, end-tail), tail); err != nil {
			return err
		}
	}
	f, err := n.file()
	if err != nil {
		return err
	}
	if err := f.Punch(first*ss, (last-first)*ss); err != nil {
		return err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	for si := first; si < last; si++ {
		if si*ss < n.baseSize {
			n.bits.set(si)
		}
		if n.bits.get(si) {
			n.marks.add(si)
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

// maxSize is the largest file the clone takes: MaxFileSize, or less when
// a generation could not name that many blocks (manifest.MaxBlocks).
func (c *clone) maxSize() int64 { return min(MaxFileSize, manifest.MaxBlocks*c.bs) }
