//go:build linux

package gofuse

import (
	"context"
	"math"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/fs"
)

// node is one kernel inode: a core node and how long the kernel may cache
// it.
type node struct {
	gofs.Inode
	m         *mount
	core      fs.Node
	immutable bool // a template node: cache without limit
}

// attrTimeout is how long the kernel may keep n's attributes.
func (n *node) attrTimeout() time.Duration {
	if n.immutable {
		return immutableTimeout
	}
	return cloneTimeout
}

// entryTimeout is how long the kernel may keep the names in directory n:
// forever in a template, briefly in the top directories (which follow the
// catalog) and in clones.
func (n *node) entryTimeout() time.Duration {
	if n.immutable {
		return immutableTimeout
	}
	return min(listTimeout, cloneTimeout)
}

// child makes (or finds) the kernel inode of core node c, a child of n,
// and fills out.
func (n *node) child(ctx context.Context, c fs.Node, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	a, err := c.Attr(ctx)
	if err != nil {
		return nil, n.m.errno("getattr", err)
	}
	ch := &node{m: n.m, core: c, immutable: a.Immutable}
	n.m.fillAttr(&out.Attr, a)
	out.SetEntryTimeout(n.entryTimeout())
	out.SetAttrTimeout(ch.attrTimeout())
	return n.NewInode(ctx, ch, gofs.StableAttr{Mode: fs.UnixType(a.Mode), Ino: a.Ino}), 0
}

func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	defer n.m.timed("lookup", time.Now())
	d, ok := n.core.(fs.Dir)
	if !ok {
		return nil, syscall.ENOTDIR
	}
	c, err := d.Lookup(ctx, name)
	if err != nil {
		return nil, n.m.errno("lookup", err)
	}
	return n.child(ctx, c, out)
}

func (n *node) Getattr(ctx context.Context, f gofs.FileHandle, out *fuse.AttrOut) syscall.Errno {
	defer n.m.timed("getattr", time.Now())
	a, err := n.core.Attr(ctx)
	if err != nil {
		return n.m.errno("getattr", err)
	}
	n.m.fillAttr(&out.Attr, a)
	out.SetTimeout(n.attrTimeout())
	return 0
}

func (n *node) Setattr(ctx context.Context, f gofs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	defer n.m.timed("setattr", time.Now())
	s, ok := n.core.(fs.Setter)
	if !ok {
		return syscall.EROFS
	}
	var sa fs.SetAttr
	if mode, ok := in.GetMode(); ok {
		m := fs.PermFromUnix(mode)
		sa.Mode = &m
	}
	if size, ok := in.GetSize(); ok {
		sz := int64(size)
		sa.Size = &sz
	}
	if mt, ok := in.GetMTime(); ok {
		sa.MTime = &mt
	}
	if at, ok := in.GetATime(); ok {
		sa.ATime = &at
	}
	if uid, ok := in.GetUID(); ok {
		sa.UID = &uid
	}
	if gid, ok := in.GetGID(); ok {
		sa.GID = &gid
	}
	a, err := s.SetAttr(uninterrupted(ctx), sa)
	if err != nil {
		return n.m.errno("setattr", err)
	}
	n.m.fillAttr(&out.Attr, a)
	out.SetTimeout(n.attrTimeout())
	return 0
}

func (n *node) Readdir(ctx context.Context) (gofs.DirStream, syscall.Errno) {
	defer n.m.timed("readdir", time.Now())
	d, ok := n.core.(fs.Dir)
	if !ok {
		return nil, syscall.ENOTDIR
	}
	ents, err := d.ReadDir(ctx)
	if err != nil {
		return nil, n.m.errno("readdir", err)
	}
	self := n.StableAttr().Ino
	up := self
	if _, p := n.Parent(); p != nil {
		up = p.StableAttr().Ino
	}
	ents = fs.WithDots(ents, self, up)
	out := make([]fuse.DirEntry, len(ents))
	for i, e := range ents {
		out[i] = fuse.DirEntry{Name: e.Name, Mode: fs.UnixType(e.Mode), Ino: e.Ino}
	}
	return gofs.NewListDirStream(out), 0
}

func (n *node) Readlink(ctx context.Context) ([]byte, syscall.Errno) {
	defer n.m.timed("readlink", time.Now())
	l, ok := n.core.(fs.Symlink)
	if !ok {
		return nil, syscall.EINVAL
	}
	t, err := l.Readlink(ctx)
	if err != nil {
		return nil, n.m.errno("readlink", err)
	}
	return []byte(t), 0
}

func (n *node) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	defer n.m.timed("open", time.Now())
	f, ok := n.core.(fs.File)
	if !ok {
		return nil, 0, syscall.EISDIR
	}
	h, err := f.Open(uninterrupted(ctx), int(flags))
	if err != nil {
		return nil, 0, n.m.errno("open", err)
	}
	return &handle{m: n.m, h: h}, n.openFlags(), 0
}

// openFlags are the FOPEN_ flags of n's open files.
func (n *node) openFlags() uint32 {
	if n.immutable {
		return fuse.FOPEN_KEEP_CACHE
	}
	if n.m.opts.CloneCache == CacheDirect {
		return fuse.FOPEN_DIRECT_IO
	}
	// The page cache of a clone file can only be stale if the file
	// changed behind the kernel's back, which it cannot.
	return fuse.FOPEN_KEEP_CACHE
}

// Lseek answers SEEK_DATA and SEEK_HOLE from the core (the kernel does
// the other whences itself), so that cp --sparse, qemu-img and tar -S
// skip a VM disk's holes.
func (n *node) Lseek(ctx context.Context, f gofs.FileHandle, off uint64, whence uint32) (uint64, syscall.Errno) {
	defer n.m.timed("lseek", time.Now())
	s, ok := n.core.(fs.Seeker)
	if !ok || (whence != unix.SEEK_DATA && whence != unix.SEEK_HOLE) || off > math.MaxInt64 {
		return 0, syscall.EINVAL
	}
	at, err := s.SeekData(ctx, int64(off), whence == unix.SEEK_HOLE)
	if err != nil {
		return 0, n.m.errno("lseek", err)
	}
	return uint64(at), 0
}

func (n *node) Statfs(ctx context.Context, out *fuse.StatfsOut) syscall.Errno {
	defer n.m.timed("statfs", time.Now())
	st, err := n.m.core.Statfs(ctx)
	if err != nil {
		return n.m.errno("statfs", err)
	}
	out.Bsize = uint32(st.BlockSize)
	out.Frsize = uint32(st.BlockSize)
	out.Blocks, out.Bfree, out.Bavail = st.Blocks, st.Free, st.Avail
	out.Files, out.Ffree = st.Files, st.FilesFree
	out.NameLen = uint32(st.NameLen)
	return 0
}

// uninterrupted detaches ctx from the kernel's interrupts for operations
// that commit metadata (fsync, namespace changes, truncate): they are
// short, and callers rarely retry them on EINTR; go-fuse turns every
// signal the caller gets into an interrupt, even the Go runtime's
// preemption signal. Reads and writes stay interruptible: they may wait
// on the network for base blocks.
func uninterrupted(ctx context.Context) context.Context { return context.WithoutCancel(ctx) }

// Fsync syncs an open file through its handle; a directory (FSYNCDIR
// comes here too) commits its own pending attribute changes, its entries
// being durable already.
func (n *node) Fsync(ctx context.Context, f gofs.FileHandle, flags uint32) syscall.Errno {
	defer n.m.timed("fsync", time.Now())
	if h, ok := f.(*handle); ok {
		return h.Fsync(ctx, flags)
	}
	if s, ok := n.core.(fs.Syncer); ok {
		return n.m.errno("fsync", s.Sync(uninterrupted(ctx)))
	}
	return 0
}
