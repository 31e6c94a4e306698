package fs

import (
	"context"
	"fmt"
	iofs "io/fs"
	"os"
	"syscall"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// Namespace changes of a clone. Each begins a change (c.begin), holds c.ns
// for writing, commits the records and entries it touches in one
// CommitMeta, and changes the tree in memory only when the commit
// succeeded.

var _ MutableDir = (*cloneDir)(nil)

// touchOp returns the op that stores directory n with a new mtime.
func (n *cinode) touchOp(now time.Time) blockstore.MetaOp {
	n.mu.Lock()
	defer n.mu.Unlock()
	r := n.recordLocked()
	r.mtime, r.ctime = nanos(now), nanos(now)
	return blockstore.MetaOp{Key: n.c.inodeKey(n.ino), Value: r.marshal()}
}

func (n *cinode) touch(now time.Time) {
	n.mu.Lock()
	n.mtime, n.ctime = now, now
	n.mu.Unlock()
}

// add makes a new inode from r called name in d, owned by the caller (the
// group is d's when d is setgid, and a directory made there is setgid
// too, as on a local disk).
func (d *cloneDir) add(ctx context.Context, name string, r record) (*cinode, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	c := d.n.c
	if !d.n.linked {
		return nil, fmt.Errorf("directory removed: %w", ErrNotExist)
	}
	if err := d.n.checkFree(name); err != nil {
		return nil, err
	}
	if err := checkPathLen(d.n, name, 0); err != nil {
		return nil, err
	}
	if err := c.fsys.checkSpace(); err != nil {
		return nil, err
	}
	if len(c.inodes) >= manifest.MaxFiles {
		// The server takes no manifest with more entries: refuse the
		// entry here rather than have the clone stop syncing.
		return nil, fmt.Errorf("create %q: the clone holds %d entries, the most a generation may: %w", name, len(c.inodes), syscall.ENOSPC)
	}
	o := c.fsys.ids.stored(c.fsys.caller(ctx))
	d.n.mu.Lock()
	if d.n.mode&iofs.ModeSetgid != 0 {
		o.GID = d.n.owner.GID
		if r.mode.IsDir() {
			r.mode |= iofs.ModeSetgid
		}
	}
	d.n.mu.Unlock()
	r.uid, r.gid, r.owned = o.UID, o.GID, true
	ino := c.nextIno
	n, err := c.newInode(ino, r)
	if err != nil {
		return nil, err
	}
	now := time.Now()
	err = c.fsys.cfg.Meta.CommitMeta(ctx,
		blockstore.MetaOp{Key: c.inodeKey(ino), Value: r.marshal(), Check: true},
		blockstore.MetaOp{Key: c.dentKey(d.n.ino, name), Value: inoValue(ino), Check: true},
		d.n.touchOp(now))
	if err != nil {
		return nil, fmt.Errorf("create %q: %w", name, err)
	}
	c.nextIno++
	n.parent, n.name, n.linked, n.nlink = d.n, name, true, 1
	d.n.setChild(name, n)
	c.inodes[ino] = n
	d.n.touch(now)
	return n, nil
}

// setChild enters ch in directory n as name; c.ns is held for writing.
func (n *cinode) setChild(name string, ch *cinode) {
	n.children[name] = ch
	if n.names != nil {
		n.names.add(name)
	}
}

// unsetChild removes entry name of directory n; c.ns is held for writing.
func (n *cinode) unsetChild(name string) {
	delete(n.children, name)
	if n.names != nil {
		n.names.remove(name)
	}
}

// clash returns the entry of directory n that a new entry name would
// show alike with (Windows names), if any; c.ns is held.
func (n *cinode) clash(name string) (string, bool) {
	if n.names == nil {
		return "", false
	}
	return n.names.clash(name)
}

// checkFree refuses a new entry name of directory n that is taken, or
// that would show alike with an entry (Windows names); c.ns is held.
func (n *cinode) checkFree(name string) error {
	if n.children[name] != nil {
		return fmt.Errorf("%q: %w", name, ErrExist)
	}
	if o, ok := n.clash(name); ok {
		return fmt.Errorf("%q shows as %q does: %w", name, o, ErrExist)
	}
	return nil
}

func newRecord(mode iofs.FileMode) record {
	now := nanos(time.Now())
	return record{mode: mode, mtime: now, atime: now, ctime: now}
}

func (d *cloneDir) Create(ctx context.Context, name string, mode iofs.FileMode, flags int) (Node, Handle, error) {
	c := d.n.c
	if err := c.begin(); err != nil {
		return nil, nil, err
	}
	defer c.end()
	c.ns.Lock()
	if ch := d.n.children[name]; ch != nil && flags&os.O_EXCL == 0 {
		c.ns.Unlock()
		if !ch.mode.IsRegular() {
			return nil, nil, fmt.Errorf("%q: %w", name, ErrExist)
		}
		h, err := ch.open(ctx, flags)
		if err != nil {
			return nil, nil, err
		}
		return c.node(ch), h, nil
	}
	n, err := d.add(ctx, name, newRecord(mode.Perm()|mode&(iofs.ModeSetuid|iofs.ModeSetgid|iofs.ModeSticky)))
	c.ns.Unlock()
	if err != nil {
		return nil, nil, err
	}
	h, err := n.open(ctx, flags&^os.O_TRUNC)
	if err != nil {
		return nil, nil, err
	}
	return c.node(n), h, nil
}

func (d *cloneDir) Mkdir(ctx context.Context, name string, mode iofs.FileMode) (Node, error) {
	c := d.n.c
	if err := c.begin(); err != nil {
		return nil, err
	}
	defer c.end()
	c.ns.Lock()
	defer c.ns.Unlock()
	n, err := d.add(ctx, name, newRecord(iofs.ModeDir|mode&(iofs.ModePerm|iofs.ModeSetgid|iofs.ModeSticky)))
	if err != nil {
		return nil, err
	}
	return c.node(n), nil
}

func (d *cloneDir) Symlink(ctx context.Context, target, name string) (Node, error) {
	if target == "" || len(target) > maxRecordString {
		return nil, fmt.Errorf("symlink target of %d bytes: %w", len(target), ErrInvalid)
	}
	c := d.n.c
	if err := c.begin(); err != nil {
		return nil, err
	}
	defer c.end()
	c.ns.Lock()
	defer c.ns.Unlock()
	r := newRecord(iofs.ModeSymlink | 0o777)
	r.target = target
	n, err := d.add(ctx, name, r)
	if err != nil {
		return nil, err
	}
	return c.node(n), nil
}

// Mknod makes a FIFO, socket or device node; a regular file type makes
// an empty regular file, as mknod(2) does.
func (d *cloneDir) Mknod(ctx context.Context, name string, mode iofs.FileMode, rdev uint64) (Node, error) {
	switch {
	case mode.IsRegular():
		n, h, err := d.Create(ctx, name, mode, os.O_EXCL)
		if err != nil {
			return nil, err
		}
		return n, h.Release(ctx)
	case mode.IsDir() || mode.Type() == iofs.ModeSymlink || !validType(mode):
		return nil, fmt.Errorf("mknod %q of type %v: %w", name, mode.Type(), ErrInvalid)
	}
	if !isDevice(mode) {
		rdev = 0
	}
	c := d.n.c
	if err := c.begin(); err != nil {
		return nil, err
	}
	defer c.end()
	c.ns.Lock()
	defer c.ns.Unlock()
	r := newRecord(mode.Type() | mode&permMode)
	r.rdev = rdev
	n, err := d.add(ctx, name, r)
	if err != nil {
		return nil, err
	}
	return c.node(n), nil
}

// inodeOf returns the clone inode behind a node of a clone, or nil.
func inodeOf(n Node) *cinode {
	switch t := n.(type) {
	case *cloneFile:
		return t.n
	case *cloneLink:
		return t.n
	case *cloneSpecial:
		return t.n
	case *cloneDir:
		return t.n
	}
	return nil
}

// Link makes name another entry of target's inode: one more Meta entry,
// and the record's ctime.
func (d *cloneDir) Link(ctx context.Context, target Node, name string) (Node, error) {
	t := inodeOf(target)
	switch {
	case t == nil || t.c != d.n.c:
		return nil, ErrCrossDevice
	case t.mode.IsDir():
		return nil, fmt.Errorf("link to a directory: %w", ErrPermission)
	}
	if err := checkName(name); err != nil {
		return nil, err
	}
	c := d.n.c
	if err := c.begin(); err != nil {
		return nil, err
	}
	defer c.end()
	c.ns.Lock()
	defer c.ns.Unlock()
	switch {
	case !d.n.linked:
		return nil, fmt.Errorf("directory removed: %w", ErrNotExist)
	case t.nlink == 0:
		return nil, fmt.Errorf("link to a removed file: %w", ErrNotExist)
	case t.nlink >= maxLinks:
		return nil, fmt.Errorf("%q: %d links: %w", name, t.nlink, ErrTooManyLinks)
	}
	if err := d.n.checkFree(name); err != nil {
		return nil, err
	}
	if err := checkPathLen(d.n, name, 0); err != nil {
		return nil, err
	}
	if err := c.fsys.checkSpace(); err != nil {
		return nil, err
	}
	now := time.Now()
	err := c.fsys.cfg.Meta.CommitMeta(ctx,
		blockstore.MetaOp{Key: c.dentKey(d.n.ino, name), Value: inoValue(t.ino), Check: true},
		d.n.touchOp(now))
	if err != nil {
		return nil, fmt.Errorf("link %q: %w", name, err)
	}
	d.n.setChild(name, t)
	t.nlink++
	d.n.touch(now)
	t.mu.Lock()
	t.ctime = now
	t.setDirtyLocked()
	t.mu.Unlock()
	return c.node(t), nil
}

// maxLinks bounds a file's names, as ext4's 65000.
const maxLinks = 65000

// removal is entry name of dir leaving the tree, and with it the inode
// when that was its last name: the ops that delete them from Meta, and
// what to do once they are committed. When the inode goes, its syncMu is
// held from prepare to done, so no sync commits its record again. c.ns is
// held throughout.
type removal struct {
	n    *cinode
	dir  *cinode
	name string
	last bool // the inode's last name
	ops  []blockstore.MetaOp
}

func (n *cinode) prepareRemoval(dir *cinode, name string) *removal {
	r := &removal{n: n, dir: dir, name: name, last: n.mode.IsDir() || n.nlink <= 1}
	if !r.last {
		// Another name remains: only the entry goes (the caller's op);
		// the record keeps its size and times until its next sync.
		return r
	}
	n.syncMu.Lock()
	ops := []blockstore.MetaOp{{Key: n.c.inodeKey(n.ino)}}
	n.mu.Lock()
	for idx := range n.bits.stored {
		ops = append(ops, blockstore.MetaOp{Key: n.c.chunkKey(n.ino, idx)})
	}
	n.mu.Unlock()
	r.ops = ops
	return r
}

// done finishes the removal; committed says whether its ops were. It
// returns whether the inode's data must now be discarded (call discard
// without c.ns held).
func (r *removal) done(committed bool) (discard bool) {
	n := r.n
	if !r.last {
		if committed {
			r.dir.unsetChild(r.name)
			n.nlink--
			n.mu.Lock()
			n.ctime = time.Now()
			n.setDirtyLocked()
			n.mu.Unlock()
		}
		return false
	}
	defer n.syncMu.Unlock()
	if !committed {
		return false
	}
	n.linked = false
	n.nlink = 0
	r.dir.unsetChild(r.name)
	n.parent = nil
	n.mu.Lock()
	defer n.mu.Unlock()
	n.gone = true
	n.ctime = time.Now()
	if !n.mode.IsRegular() {
		delete(n.c.inodes, n.ino)
		return false
	}
	if n.opens == 0 && !n.discarded {
		n.discarded = true
		return true
	}
	return false
}

func (d *cloneDir) Unlink(ctx context.Context, name string) error {
	c := d.n.c
	if err := c.begin(); err != nil {
		return err
	}
	defer c.end()
	c.ns.Lock()
	ch := d.n.children[name]
	if ch == nil {
		c.ns.Unlock()
		return fmt.Errorf("%q: %w", name, ErrNotExist)
	}
	if ch.mode.IsDir() {
		c.ns.Unlock()
		return fmt.Errorf("%q: %w", name, ErrIsDir)
	}
	discard, err := d.remove(ctx, name, ch)
	c.ns.Unlock()
	if discard {
		if derr := ch.discard(); derr != nil {
			c.fsys.log.Warn("removing an unlinked file's data", "clone", c.name, "inode", ch.ino, "err", derr)
		}
	}
	return err
}

func (d *cloneDir) Rmdir(ctx context.Context, name string) error {
	c := d.n.c
	if err := c.begin(); err != nil {
		return err
	}
	defer c.end()
	c.ns.Lock()
	defer c.ns.Unlock()
	ch := d.n.children[name]
	switch {
	case ch == nil:
		return fmt.Errorf("%q: %w", name, ErrNotExist)
	case !ch.mode.IsDir():
		return fmt.Errorf("%q: %w", name, ErrNotDir)
	case len(ch.children) > 0:
		return fmt.Errorf("%q: %w", name, ErrNotEmpty)
	}
	_, err := d.remove(ctx, name, ch)
	return err
}

// remove commits the removal of entry name (inode ch) from d; c.ns is
// held.
func (d *cloneDir) remove(ctx context.Context, name string, ch *cinode) (discard bool, err error) {
	c := d.n.c
	now := time.Now()
	r := ch.prepareRemoval(d.n, name)
	ops := append(r.ops,
		blockstore.MetaOp{Key: c.dentKey(d.n.ino, name)},
		d.n.touchOp(now))
	err = c.fsys.cfg.Meta.CommitMeta(ctx, ops...)
	discard = r.done(err == nil)
	if err != nil {
		return false, fmt.Errorf("remove %q: %w", name, err)
	}
	d.n.touch(now)
	return discard, nil
}

func (d *cloneDir) Rename(ctx context.Context, name string, newDir MutableDir, newName string, flags RenameFlags) error {
	nd, ok := newDir.(*cloneDir)
	if !ok || nd.n.c != d.n.c {
		return ErrCrossDevice
	}
	if flags&^RenameNoReplace != 0 {
		return fmt.Errorf("rename flags %#x: %w", uint32(flags), ErrInvalid)
	}
	if err := checkName(newName); err != nil {
		return err
	}
	c := d.n.c
	if err := c.begin(); err != nil {
		return err
	}
	defer c.end()
	c.ns.Lock()
	src := d.n.children[name]
	if src == nil {
		c.ns.Unlock()
		return fmt.Errorf("%q: %w", name, ErrNotExist)
	}
	if !nd.n.linked {
		c.ns.Unlock()
		return fmt.Errorf("target directory removed: %w", ErrNotExist)
	}
	victim := nd.n.children[newName]
	if victim == src {
		c.ns.Unlock()
		return nil
	}
	if o, ok := nd.n.clash(newName); ok && nd.n.children[o] != src {
		c.ns.Unlock()
		return fmt.Errorf("rename to %q, which shows as %q does: %w", newName, o, ErrExist)
	}
	if victim != nil {
		var err error
		switch {
		case flags&RenameNoReplace != 0:
			err = ErrExist
		case src.mode.IsDir() && !victim.mode.IsDir():
			err = ErrNotDir
		case !src.mode.IsDir() && victim.mode.IsDir():
			err = ErrIsDir
		case victim.mode.IsDir() && len(victim.children) > 0:
			err = ErrNotEmpty
		}
		if err != nil {
			c.ns.Unlock()
			return fmt.Errorf("rename over %q: %w", newName, err)
		}
	}
	if src.mode.IsDir() {
		for p := nd.n; p != nil; p = p.parent {
			if p == src {
				c.ns.Unlock()
				return fmt.Errorf("rename %q into itself: %w", name, ErrInvalid)
			}
		}
	}
	if err := checkPathLen(nd.n, newName, src.subtreePathLen()); err != nil {
		c.ns.Unlock()
		return err
	}
	now := time.Now()
	ops := []blockstore.MetaOp{
		{Key: c.dentKey(d.n.ino, name)},
		{Key: c.dentKey(nd.n.ino, newName), Value: inoValue(src.ino)},
		d.n.touchOp(now),
	}
	if nd != d {
		ops = append(ops, nd.n.touchOp(now))
	}
	var r *removal
	if victim != nil {
		r = victim.prepareRemoval(nd.n, newName)
		ops = append(ops, r.ops...)
	}
	err := c.fsys.cfg.Meta.CommitMeta(ctx, ops...)
	discard := false
	if r != nil {
		discard = r.done(err == nil)
	}
	if err == nil {
		d.n.unsetChild(name)
		nd.n.setChild(newName, src) // after the victim's done, which deleted newName
		src.parent, src.name = nd.n, newName
		d.n.touch(now)
		nd.n.touch(now)
		src.mu.Lock()
		src.ctime = now
		src.mu.Unlock()
	}
	c.ns.Unlock()
	if discard {
		if derr := victim.discard(); derr != nil {
			c.fsys.log.Warn("removing a replaced file's data", "clone", c.name, "inode", victim.ino, "err", derr)
		}
	}
	if err != nil {
		return fmt.Errorf("rename %q to %q: %w", name, newName, err)
	}
	return nil
}

// pathLen is the length in bytes of n's path from the clone root, as a
// manifest names it ("a/b/c"; 0 for the root); c.ns is held.
func (n *cinode) pathLen() int {
	l := 0
	for p := n; p.parent != nil; p = p.parent {
		l += len(p.name)
		if p.parent.parent != nil {
			l++ // the slash before it
		}
	}
	return l
}

// subtreePathLen is the length of the longest path below n, relative to
// n and with its leading slash ("/x/y"; 0 when n has no children); c.ns
// is held.
func (n *cinode) subtreePathLen() int {
	longest := 0
	for name, ch := range n.children {
		longest = max(longest, 1+len(name)+ch.subtreePathLen())
	}
	return longest
}

// checkPathLen refuses an entry name in dir whose path (or, for a
// directory moved there, the longest path below it, below bytes more)
// would be longer than a manifest takes: the server would refuse the
// clone's every later generation. c.ns is held.
func checkPathLen(dir *cinode, name string, below int) error {
	l := dir.pathLen() + len(name) + below
	if dir.parent != nil {
		l++
	}
	if l > manifest.MaxPathLen {
		return fmt.Errorf("%q: path of %d bytes from the clone root, more than %d: %w", name, l, manifest.MaxPathLen, ErrNameTooLong)
	}
	return nil
}
