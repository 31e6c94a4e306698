package fs

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	iofs "io/fs"
	"math/bits"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// clone is one clone's namespace and overlay.
type clone struct {
	fsys   *FS
	name   string
	space  uint64
	base   *manifest.Manifest
	bs     int64
	ss     int64  // sector size: the unit of copy-on-write
	dir    string // StateDir/NAME: the data files
	prefix string // "ovl/NAME/": the metadata keys

	// change is held shared by every change to the clone for its whole
	// length (begin, end), and alone by Seal and Drop, which so hold
	// changes off. It comes before every other lock of the clone.
	change sync.RWMutex
	// openMu is held shared while an open counts its handle, alone while
	// Drop checks that no file is open.
	openMu sync.RWMutex
	// dropped: Drop discarded the overlay; changes and opens fail. Set
	// with change and openMu held alone.
	dropped atomic.Bool

	// ns guards the tree: every inode's parent, name, children and
	// linked, and inodes and nextIno.
	ns      sync.RWMutex
	root    *cinode
	inodes  map[uint64]*cinode // linked, or unlinked but still open
	nextIno uint64

	dirtyMu sync.Mutex
	dirty   map[*cinode]struct{} // inodes with changes not yet committed

	changes *atomic.Uint64 // FS.Changes of this clone
}

// clone returns the loaded clone name, loading it the first time.
func (fsys *FS) clone(ctx context.Context, name string) (*clone, error) {
	fsys.loadMu.Lock()
	defer fsys.loadMu.Unlock()
	fsys.mu.Lock()
	c, closed := fsys.loaded[name], fsys.closed
	fsys.mu.Unlock()
	if c != nil {
		return c, nil
	}
	if closed {
		return nil, fmt.Errorf("clone %s: %w", name, os.ErrClosed)
	}
	m, err := fsys.cfg.Catalog.Clone(ctx, name)
	if notExist(err) {
		return nil, fmt.Errorf("clone %s: %w", name, ErrNotExist)
	}
	if err != nil {
		return nil, fmt.Errorf("clone %s: %w", name, err)
	}
	if m.BlockSize == 0 {
		return nil, fmt.Errorf("clone %s: %w: block size 0", name, ErrCorrupt)
	}
	c = &clone{
		fsys:    fsys,
		name:    name,
		space:   fsys.newSpace(),
		base:    m,
		bs:      int64(m.BlockSize),
		ss:      sectorSize(int64(m.BlockSize)),
		dir:     fsys.cloneDir(name),
		prefix:  "ovl/" + name + "/",
		inodes:  make(map[uint64]*cinode),
		dirty:   make(map[*cinode]struct{}),
		changes: fsys.changeCounter(name),
	}
	if err := c.load(ctx); err != nil {
		fsys.log.Error("clone not opened", "clone", name, "err", err)
		return nil, fmt.Errorf("clone %s: %w", name, err)
	}
	fsys.mu.Lock()
	fsys.loaded[name] = c
	fsys.mu.Unlock()
	fsys.log.Info("clone opened", "clone", name, "generation", m.Version, "inodes", len(c.inodes))
	return c, nil
}

// load reads the overlay from Meta, making it from the base the first
// time, and checks the data files against it.
func (c *clone) load(ctx context.Context) error {
	hb, err := c.fsys.cfg.Meta.GetMeta(ctx, c.hdrKey())
	if errors.Is(err, blockstore.ErrNotFound) {
		// Whatever is left without a header (an init or a Drop cut
		// short) goes before the overlay is made afresh.
		if err := c.fsys.purge(ctx, c.name); err != nil {
			return fmt.Errorf("remove leftovers: %w", err)
		}
	}
	if err := os.MkdirAll(c.dir, 0o700); err != nil {
		return err
	}
	if err := diskio.SyncDir(filepath.Dir(c.dir)); err != nil {
		return err
	}
	legacy := false
	switch {
	case errors.Is(err, blockstore.ErrNotFound):
		if err := c.initFromBase(ctx); err != nil {
			return fmt.Errorf("make overlay: %w", err)
		}
	case err != nil:
		return err
	default:
		h, err := unmarshalHeader(hb)
		if err != nil {
			return err
		}
		if h.baseVersion != c.base.Version || int64(h.blockSize) != c.bs {
			return fmt.Errorf("%w: overlay on generation %d (blocks of %d), catalog has %d (blocks of %d)",
				ErrBaseChanged, h.baseVersion, h.blockSize, c.base.Version, c.bs)
		}
		legacy = h.format == formatV1
	}
	if err := c.loadMeta(ctx); err != nil {
		return err
	}
	if legacy {
		if err := c.convertV1(ctx); err != nil {
			return fmt.Errorf("convert the overlay to sectors: %w", err)
		}
	}
	return c.checkDataFiles()
}

// initFromBase copies the base's namespace into Meta: the root is inode
// 1, the base's file i is inode i+2. The header goes last, so an init cut
// short is done again from the start.
func (c *clone) initFromBase(ctx context.Context) error {
	m := c.base
	created := nanos(m.Created)
	now := nanos(time.Now())
	root := record{mode: iofs.ModeDir | 0o755, mtime: created, ctime: now}
	ops := []blockstore.MetaOp{{Key: c.inodeKey(1), Value: root.marshal()}}
	commit := func() error {
		err := c.fsys.cfg.Meta.CommitMeta(ctx, ops...)
		ops = ops[:0]
		return err
	}
	owner := c.fsys.ids.stored(c.fsys.cfg.Owner)
	for i := range m.Files {
		f := &m.Files[i]
		ino := uint64(i) + 2
		r := record{mode: f.Mode, mtime: nanos(f.MTime), atime: nanos(f.ATime), ctime: now,
			target: f.Target, rdev: f.Rdev, uid: owner.UID, gid: owner.GID, owned: true}
		if m.Owners {
			r.uid, r.gid = f.UID, f.GID
		}
		if f.Mode.Type() == 0 {
			r.size, r.baseSize, r.basePath = f.Size, f.Size, f.Path
		}
		if f.Link != "" {
			// Another name of an earlier entry: its inode, no record.
			p, found := fileIndex(m, f.Link)
			if !found {
				return fmt.Errorf("%w: base %q links to missing %q", ErrCorrupt, f.Path, f.Link)
			}
			ino = uint64(p) + 2
		}
		parent := uint64(1)
		dir, name, ok := cutLast(f.Path)
		if ok {
			p, found := fileIndex(m, dir)
			if !found {
				return fmt.Errorf("%w: base %q has no parent", ErrCorrupt, f.Path)
			}
			parent = uint64(p) + 2
		}
		if f.Link == "" {
			ops = append(ops, blockstore.MetaOp{Key: c.inodeKey(ino), Value: r.marshal()})
		}
		ops = append(ops, blockstore.MetaOp{Key: c.dentKey(parent, name), Value: inoValue(ino)})
		if len(ops) >= 1000 {
			if err := commit(); err != nil {
				return err
			}
		}
	}
	h := newHeader(m.Version, m.BlockSize)
	ops = append(ops, blockstore.MetaOp{Key: c.hdrKey(), Value: h.marshal(), Check: true})
	return commit()
}

type dentry struct {
	parent, child uint64
	name          string
}

type storedChunk struct {
	ino   uint64
	chunk int
	data  []byte
}

// loadMeta builds the tree from Meta. Keys sort "b/" < "d/" < "hdr" <
// "i/", so entries and bitmaps are gathered first and applied once every
// record is in.
func (c *clone) loadMeta(ctx context.Context) error {
	var dents []dentry
	var chunks []storedChunk
	corrupt := func(format string, args ...any) error {
		return fmt.Errorf("%w: "+format, append([]any{ErrCorrupt}, args...)...)
	}
	err := c.fsys.cfg.Meta.ListMeta(ctx, c.prefix, func(key string, value []byte) error {
		kind, rest, _ := strings.Cut(strings.TrimPrefix(key, c.prefix), "/")
		switch kind {
		case "hdr":
		case "i":
			ino, ok := parseHex(rest, 16)
			if !ok || ino == 0 || ino >= 1<<inoLocalBits {
				return corrupt("key %q", key)
			}
			r, err := unmarshalRecord(value)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			n, err := c.newInode(ino, r)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			c.inodes[ino] = n
			c.nextIno = max(c.nextIno, ino+1)
		case "d":
			ps, name, _ := strings.Cut(rest, "/")
			parent, ok := parseHex(ps, 16)
			if !ok || len(value) != 8 || checkName(name) != nil {
				return corrupt("entry %q", key)
			}
			dents = append(dents, dentry{parent, binary.BigEndian.Uint64(value), name})
		case "b":
			is, cs, _ := strings.Cut(rest, "/")
			ino, ok1 := parseHex(is, 16)
			chunk, ok2 := parseHex(cs, 8)
			if !ok1 || !ok2 {
				return corrupt("bitmap key %q", key)
			}
			chunks = append(chunks, storedChunk{ino, int(chunk), append([]byte(nil), value...)})
		default:
			return corrupt("key %q", key)
		}
		return nil
	})
	if err != nil {
		return err
	}
	c.root = c.inodes[1]
	if c.root == nil || !c.root.mode.IsDir() {
		return corrupt("no root directory")
	}
	c.root.linked = true
	for _, d := range dents {
		p, ch := c.inodes[d.parent], c.inodes[d.child]
		switch {
		case p == nil || ch == nil:
			return corrupt("entry %q of %d names a missing inode %d", d.name, d.parent, d.child)
		case !p.mode.IsDir():
			return corrupt("entry %q in non-directory %d", d.name, d.parent)
		case ch == c.root || ch.mode.IsDir() && ch.parent != nil:
			return corrupt("directory inode %d has two entries", d.child)
		}
		ch.parent, ch.name = p, d.name
		ch.nlink++
		p.setChild(d.name, ch)
	}
	for _, ch := range chunks {
		n := c.inodes[ch.ino]
		if n == nil || !n.mode.IsRegular() {
			return corrupt("bitmap of missing or non-regular inode %d", ch.ino)
		}
		if err := n.bits.load(ch.chunk, ch.data); err != nil {
			return err
		}
	}
	// Nothing tells which local blocks the last Seal saw: all of them
	// count as changed once.
	for _, n := range c.inodes {
		n.marks = slices.Clone(blockSet(n.bits.words))
	}
	// Everything must hang from the root; what does not (a cycle, or a
	// record left without an entry) is reported, not guessed at.
	var walk func(n *cinode)
	walk = func(n *cinode) {
		for _, ch := range n.children {
			ch.linked = true
			walk(ch)
		}
	}
	walk(c.root)
	for ino, n := range c.inodes {
		if !n.linked {
			return corrupt("inode %d is not reachable from the root", ino)
		}
	}
	c.nextIno = max(c.nextIno, 2)
	return nil
}

// convertV1 turns the bitmaps of a format 1 overlay, loaded as they are
// stored (a bit a block), into bitmaps of sectors, and commits them with
// the format 2 header in one CommitMeta: a crash before it leaves the
// overlay in format 1, converted again at the next load. The data files
// keep their layout (a byte at its file offset), so nothing else changes.
func (c *clone) convertV1(ctx context.Context) error {
	spb := c.bs / c.ss
	var ops []blockstore.MetaOp
	for _, n := range c.inodes {
		if !n.mode.IsRegular() {
			continue
		}
		old, oldStored := n.bits.words, n.bits.stored
		n.bits = bitmap{}
		for w, word := range old {
			for ; word != 0; word &= word - 1 {
				bi := int64(w)*64 + int64(bits.TrailingZeros64(word))
				n.bits.setRange(bi*spb, (bi+1)*spb)
			}
		}
		n.bits.clearFrom((n.size + c.ss - 1) / c.ss)
		chunks := n.bits.takeDirty()
		n.bits.committed(chunks)
		for _, ch := range chunks {
			ops = append(ops, blockstore.MetaOp{Key: c.chunkKey(n.ino, ch.idx), Value: ch.data})
		}
		for idx := range oldStored { // one op a key: delete what is not rewritten
			if !n.bits.stored[idx] {
				ops = append(ops, blockstore.MetaOp{Key: c.chunkKey(n.ino, idx)})
			}
		}
		n.marks = slices.Clone(blockSet(n.bits.words))
	}
	h := newHeader(c.base.Version, uint32(c.bs))
	ops = append(ops, blockstore.MetaOp{Key: c.hdrKey(), Value: h.marshal()})
	if err := c.fsys.cfg.Meta.CommitMeta(ctx, ops...); err != nil {
		return err
	}
	c.fsys.log.Info("overlay converted to sector bitmaps", "clone", c.name)
	return nil
}

// checkDataFiles removes data files no inode owns (left by a crash after
// an unlink) and cuts each data file back to its inode's committed size:
// past it the file may hold writes that were never committed, which an
// extension of the file must not bring back.
func (c *clone) checkDataFiles() error {
	ents, err := os.ReadDir(c.dir)
	if err != nil {
		return err
	}
	have := make(map[uint64]bool)
	for _, e := range ents {
		p := filepath.Join(c.dir, e.Name())
		hexIno, ok := strings.CutSuffix(e.Name(), ".data")
		ino, ok2 := parseHex(hexIno, 16)
		n := c.inodes[ino]
		if !ok || !ok2 || n == nil || !n.mode.IsRegular() {
			c.fsys.log.Info("removing a stray overlay data file", "clone", c.name, "file", p)
			if err := os.Remove(p); err != nil {
				return err
			}
			continue
		}
		have[ino] = true
		info, err := e.Info()
		if err != nil {
			return err
		}
		if info.Size() > n.size {
			if err := os.Truncate(p, n.size); err != nil {
				return err
			}
		}
	}
	for ino, n := range c.inodes {
		if !have[ino] && n.bits.count() > 0 {
			return fmt.Errorf("%w: inode %d has local blocks but no data file %s", ErrCorrupt, ino, c.dataPath(ino))
		}
	}
	return nil
}

func (fsys *FS) cloneDir(name string) string { return filepath.Join(fsys.cfg.StateDir, name) }

func (c *clone) dataPath(ino uint64) string {
	return filepath.Join(c.dir, hex16(ino)+".data")
}

// begin starts a change to c (a write, truncate, fallocate, setattr, open
// for writing, namespace change): it asks Config.Writable, then holds Seal
// and Drop off until end. A change never begins another: a shared lock
// is not taken twice.
func (c *clone) begin() error {
	if err := c.fsys.writable(c.name); err != nil {
		return err
	}
	c.change.RLock()
	if c.dropped.Load() {
		c.change.RUnlock()
		return c.errDropped()
	}
	return nil
}

// end ends a change begun with begin.
// It counts the change before it lets a Seal in.
func (c *clone) end() {
	c.changes.Add(1)
	c.change.RUnlock()
}

// errDropped is the error of nodes of a clone that Drop discarded.
func (c *clone) errDropped() error {
	return fmt.Errorf("clone %s was dropped: %w", c.name, ErrNotExist)
}

// addDirty notes that n has changes to commit.
func (c *clone) addDirty(n *cinode) {
	c.dirtyMu.Lock()
	c.dirty[n] = struct{}{}
	c.dirtyMu.Unlock()
}

// flush syncs every inode with changes.
func (c *clone) flush(ctx context.Context) error {
	c.dirtyMu.Lock()
	list := make([]*cinode, 0, len(c.dirty))
	for n := range c.dirty {
		list = append(list, n)
	}
	clear(c.dirty)
	c.dirtyMu.Unlock()
	var errs []error
	for _, n := range list {
		if err := n.sync(ctx); err != nil {
			errs = append(errs, fmt.Errorf("clone %s inode %d: %w", c.name, n.ino, err))
		}
	}
	return errors.Join(errs...)
}

// close closes the data files.
func (c *clone) close() error {
	c.ns.Lock()
	defer c.ns.Unlock()
	var errs []error
	for _, n := range c.inodes {
		n.fileMu.Lock()
		if n.data != nil {
			errs = append(errs, n.data.Close())
			n.data = nil
		}
		n.fileMu.Unlock()
	}
	return errors.Join(errs...)
}

// lookupName checks a name looked up in any directory: one longer than
// MaxNameLen cannot exist, and POSIX says so with ENAMETOOLONG, not
// ENOENT (a tool probing a name's length must tell the two apart).
func lookupName(name string) error {
	if len(name) > MaxNameLen {
		return fmt.Errorf("name of %d bytes: %w", len(name), ErrNameTooLong)
	}
	return nil
}

// checkName checks a new name in a clone directory.
func checkName(name string) error {
	switch {
	case name == "" || name == "." || name == "..":
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	case len(name) > MaxNameLen:
		return fmt.Errorf("name of %d bytes: %w", len(name), ErrNameTooLong)
	case strings.ContainsAny(name, "/\x00"):
		return fmt.Errorf("name %q: %w", name, ErrInvalid)
	}
	return nil
}
