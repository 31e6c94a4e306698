package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// cinode is a clone's inode: a directory, a symlink or a regular file with
// its overlay.
//
// Lock order: c.change, then c.openMu, then c.ns, then syncMu, then rw,
// then a stripe, then fileMu, then mu; c.dirtyMu is taken under mu and
// never held while taking another.
type cinode struct {
	c   *clone
	ino uint64

	// Guarded by c.ns.
	parent   *cinode
	name     string
	children map[string]*cinode // directories only
	names    *nameIndex         // directories, with Windows names on
	linked   bool               // reachable from the root

	// nlink counts a non-directory's entries (hard links); guarded by
	// c.ns. Directories keep parent and name, the one entry they have.
	nlink int

	mu        sync.Mutex // guards the fields below
	mode      iofs.FileMode
	mtime     time.Time
	atime     time.Time
	ctime     time.Time
	owner     Owner  // stored IDs
	rdev      uint64 // device nodes
	target    string
	basePath  string
	base      *manifest.File // nil: no base data
	size      int64
	baseSize  int64    // base data at or past this offset reads as zeros; <= size
	bits      bitmap   // local sectors
	marks     blockSet // sectors written since the last Seal
	reshaped  blockSet // blocks whose length changed since the last Seal
	shrunk    bool     // the file was cut short since the last Seal
	dirty     bool     // changed since the last commit
	changes   uint64   // changes since the clone was loaded
	gone      bool     // record deleted from Meta: never commit it again
	opens     int      // open handles
	discarded bool     // gone, closed and its data file removed
	// alloc caches the bytes that are data (st_blocks) for allocKey.
	alloc      int64
	allocKey   allocKey
	allocValid bool

	syncMu  sync.Mutex     // one commit of this inode at a time
	rw      sync.RWMutex   // reads and writes share it; truncate and zeroing take it alone
	stripes [16]sync.Mutex // one copy-up into a given block at a time
	fileMu  sync.Mutex     // guards data and created
	data    dataFile       // nil until first needed
	created bool           // data file opened since its directory was last synced
}

// newInode makes the inode of a record read from Meta.
func (c *clone) newInode(ino uint64, r record) (*cinode, error) {
	n := &cinode{
		c: c, ino: ino,
		mode: r.mode, mtime: fromNanos(r.mtime), atime: fromNanos(r.atime), ctime: fromNanos(r.ctime),
		owner: Owner{r.uid, r.gid}, rdev: r.rdev,
		target: r.target, basePath: r.basePath, size: r.size, baseSize: r.baseSize,
	}
	if !r.owned {
		// Kept before overlays kept owners: the mount's default owner.
		n.owner = c.fsys.ids.stored(c.fsys.cfg.Owner)
	}
	if r.atime == 0 {
		n.atime = n.mtime
	}
	if r.mode.IsDir() {
		n.children = make(map[string]*cinode)
		n.names = c.fsys.newNameIndex()
	}
	if r.basePath != "" {
		f, ok := c.base.Lookup(r.basePath)
		if !ok || !f.Mode.IsRegular() || f.Size < r.baseSize {
			return nil, fmt.Errorf("%w: base file %q is missing or shorter than %d bytes", ErrCorrupt, r.basePath, r.baseSize)
		}
		n.base = f
	}
	return n, nil
}

// recordLocked returns n as Meta keeps it; n.mu is held.
func (n *cinode) recordLocked() record {
	return record{
		mode: n.mode, size: n.size, baseSize: n.baseSize,
		mtime: nanos(n.mtime), ctime: nanos(n.ctime), atime: nanos(n.atime),
		uid: n.owner.UID, gid: n.owner.GID, rdev: n.rdev, owned: true,
		target: n.target, basePath: n.basePath,
	}
}

// setDirtyLocked notes a change to commit; n.mu is held.
func (n *cinode) setDirtyLocked() {
	n.changes++
	if !n.dirty {
		n.dirty = true
		n.c.addDirty(n)
	}
}

// node wraps n in the node type of its kind.
func (c *clone) node(n *cinode) Node {
	switch {
	case n.mode.IsDir():
		return &cloneDir{cnode{n}}
	case n.mode.Type() == iofs.ModeSymlink:
		return &cloneLink{cnode{n}}
	case n.mode.IsRegular():
		return &cloneFile{cnode{n}}
	default:
		return &cloneSpecial{cnode{n}}
	}
}

func (n *cinode) attr() Attr {
	nlink := uint32(1)
	if n.mode.IsDir() {
		n.c.ns.RLock()
		nlink = 2
		for _, ch := range n.children {
			if ch.mode.IsDir() {
				nlink++
			}
		}
		if !n.linked {
			nlink = 0
		}
		n.c.ns.RUnlock()
	} else {
		n.c.ns.RLock()
		nlink = uint32(n.nlink)
		n.c.ns.RUnlock()
	}
	// The data file, if open, tells the punched local sectors from
	// written ones; a getattr does not open it (every local sector then
	// counts as data).
	df := n.openedFile()
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.gone {
		nlink = 0
	}
	o := n.c.fsys.ids.local(n.owner)
	a := Attr{
		Ino:   makeIno(n.c.space, n.ino),
		Mode:  n.mode,
		Size:  n.size,
		Nlink: nlink,
		MTime: n.mtime,
		ATime: n.atime,
		CTime: n.ctime,
		UID:   o.UID,
		GID:   o.GID,
		Rdev:  n.rdev,
	}
	switch n.mode.Type() {
	case iofs.ModeSymlink:
		a.Size = int64(len(n.target))
	case 0:
		a.Blocks = (n.allocatedLocked(df) + 511) / 512
	}
	return a
}

// cnode is what every clone node has.
type cnode struct{ n *cinode }

func (e cnode) Attr(ctx context.Context) (Attr, error) { return e.n.attr(), nil }

func (e cnode) SetAttr(ctx context.Context, a SetAttr) (Attr, error) {
	n := e.n
	if err := n.c.begin(); err != nil {
		return Attr{}, err
	}
	defer n.c.end()
	if a.Size != nil {
		if !n.mode.IsRegular() {
			if n.mode.IsDir() {
				return Attr{}, ErrIsDir
			}
			return Attr{}, ErrInvalid
		}
		if err := n.truncate(ctx, *a.Size); err != nil {
			return Attr{}, err
		}
	}
	if a.Mode != nil || a.MTime != nil || a.ATime != nil || a.UID != nil || a.GID != nil {
		n.mu.Lock()
		if a.Mode != nil {
			n.mode = n.mode.Type() | *a.Mode&permMode
		}
		if a.MTime != nil {
			n.mtime = *a.MTime
		}
		if a.ATime != nil {
			n.atime = *a.ATime
		}
		if a.UID != nil || a.GID != nil {
			ids := n.c.fsys.ids
			o := ids.local(n.owner)
			if a.UID != nil {
				o.UID = *a.UID
			}
			if a.GID != nil {
				o.GID = *a.GID
			}
			n.owner = ids.stored(o)
		}
		n.ctime = time.Now()
		n.setDirtyLocked()
		n.mu.Unlock()
	}
	return n.attr(), nil
}

func (e cnode) Sync(ctx context.Context) error { return e.n.userSync(ctx) }

// cloneDir is a directory of a clone.
type cloneDir struct{ cnode }

func (d *cloneDir) Lookup(ctx context.Context, name string) (Node, error) {
	if err := lookupName(name); err != nil {
		return nil, err
	}
	c := d.n.c
	c.ns.RLock()
	ch := d.n.children[name]
	c.ns.RUnlock()
	if ch == nil {
		return nil, fmt.Errorf("%q: %w", name, ErrNotExist)
	}
	return c.node(ch), nil
}

func (d *cloneDir) ReadDir(ctx context.Context) ([]DirEntry, error) {
	c := d.n.c
	c.ns.RLock()
	out := make([]DirEntry, 0, len(d.n.children))
	for name, ch := range d.n.children {
		out = append(out, DirEntry{Name: name, Mode: ch.mode.Type(), Ino: makeIno(c.space, ch.ino)})
	}
	c.ns.RUnlock()
	slices.SortFunc(out, func(a, b DirEntry) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (d *cloneDir) index(ctx context.Context) (*nameIndex, func(), error) {
	d.n.c.ns.RLock()
	return d.n.names, d.n.c.ns.RUnlock, nil
}

// cloneLink is a symlink of a clone.
type cloneLink struct{ cnode }

func (l *cloneLink) Readlink(ctx context.Context) (string, error) {
	l.n.mu.Lock()
	defer l.n.mu.Unlock()
	return l.n.target, nil
}

// cloneSpecial is a FIFO, socket or device node of a clone: an entry
// with attributes, never opened here.
type cloneSpecial struct{ cnode }

// cloneFile is a regular file of a clone.
type cloneFile struct{ cnode }

func (f *cloneFile) Open(ctx context.Context, flags int) (Handle, error) {
	if !forWriting(flags) {
		return f.n.open(ctx, flags)
	}
	c := f.n.c
	if err := c.begin(); err != nil {
		return nil, err
	}
	defer c.end()
	return f.n.open(ctx, flags)
}

// forWriting reports whether open flags ask for a change.
func forWriting(flags int) bool {
	return flags&(os.O_WRONLY|os.O_RDWR|os.O_TRUNC|os.O_APPEND) != 0
}

// open counts a new handle on n; O_TRUNC truncates. For writing, the
// caller has begun a change.
func (n *cinode) open(ctx context.Context, flags int) (Handle, error) {
	c := n.c
	c.openMu.RLock()
	if c.dropped.Load() {
		c.openMu.RUnlock()
		return nil, c.errDropped()
	}
	n.mu.Lock()
	if n.discarded {
		n.mu.Unlock()
		c.openMu.RUnlock()
		return nil, fmt.Errorf("inode %d: %w", n.ino, ErrNotExist)
	}
	n.opens++
	n.mu.Unlock()
	c.openMu.RUnlock()
	h := &cloneHandle{n: n}
	if flags&os.O_TRUNC != 0 && flags&(os.O_WRONLY|os.O_RDWR) != 0 {
		if err := n.truncate(ctx, 0); err != nil {
			h.Release(ctx)
			return nil, err
		}
	}
	return h, nil
}

// cloneHandle is an open regular file of a clone.
type cloneHandle struct {
	n  *cinode
	ra readAhead
}

func (h *cloneHandle) ReadAt(ctx context.Context, p []byte, off int64) (int, error) {
	return h.n.readAt(ctx, p, off, &h.ra)
}

func (h *cloneHandle) WriteAt(ctx context.Context, p []byte, off int64) (int, error) {
	c := h.n.c
	if err := c.begin(); err != nil {
		return 0, err
	}
	defer c.end()
	return h.n.writeAt(ctx, p, off)
}

func (h *cloneHandle) Sync(ctx context.Context, dataOnly bool) error { return h.n.userSync(ctx) }

func (h *cloneHandle) Allocate(ctx context.Context, off, length int64, mode AllocMode) error {
	c := h.n.c
	if err := c.begin(); err != nil {
		return err
	}
	defer c.end()
	return h.n.allocate(ctx, off, length, mode)
}

// userSync is fsync(2) or fdatasync(2): sync, then tell Config.OnSync.
func (n *cinode) userSync(ctx context.Context) error {
	if err := n.sync(ctx); err != nil {
		return err
	}
	if f := n.c.fsys.cfg.OnSync; f != nil {
		f(n.c.name)
	}
	return nil
}

// Release commits what the handle wrote (so a clean unmount loses
// nothing) and, for the last handle on an unlinked file, removes its data.
func (h *cloneHandle) Release(ctx context.Context) error {
	n := h.n
	err := n.sync(ctx)
	n.mu.Lock()
	n.opens--
	last := n.opens == 0 && n.gone && !n.discarded
	if last {
		n.discarded = true
	}
	n.mu.Unlock()
	if last {
		err = n.discard()
	}
	return err
}
