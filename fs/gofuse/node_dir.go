//go:build linux

package gofuse

import (
	"context"
	"syscall"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dvfs-project/dvfs/fs"
)

// mutable returns n's core directory if entries can be made in it:
// templates and the fixed top are read-only.
func (n *node) mutable() (fs.MutableDir, syscall.Errno) {
	d, err := fs.Mutable(n.core)
	if err != nil {
		return nil, n.m.errno("mutable", err)
	}
	return d, 0
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	defer n.m.timed("create", time.Now())
	d, errno := n.mutable()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	c, h, err := d.Create(caller(ctx), name, fs.PermFromUnix(mode), int(flags))
	if err != nil {
		return nil, nil, 0, n.m.errno("create", err)
	}
	ch, errno := n.child(ctx, c, out)
	if errno != 0 {
		h.Release(ctx)
		return nil, nil, 0, errno
	}
	return ch, &handle{m: n.m, h: h}, ch.Operations().(*node).openFlags(), 0
}

func (n *node) Mkdir(ctx context.Context, name string, mode uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	defer n.m.timed("mkdir", time.Now())
	d, errno := n.mutable()
	if errno != 0 {
		return nil, errno
	}
	c, err := d.Mkdir(caller(ctx), name, fs.PermFromUnix(mode))
	if err != nil {
		return nil, n.m.errno("mkdir", err)
	}
	return n.child(ctx, c, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	defer n.m.timed("symlink", time.Now())
	d, errno := n.mutable()
	if errno != 0 {
		return nil, errno
	}
	c, err := d.Symlink(caller(ctx), target, name)
	if err != nil {
		return nil, n.m.errno("symlink", err)
	}
	return n.child(ctx, c, out)
}

// Link makes name another name of target, a node of the same clone.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	defer n.m.timed("link", time.Now())
	d, errno := n.mutable()
	if errno != 0 {
		return nil, errno
	}
	t, ok := target.(*node)
	if !ok {
		return nil, syscall.EXDEV
	}
	c, err := d.Link(caller(ctx), t.core, name)
	if err != nil {
		return nil, n.m.errno("link", err)
	}
	return n.child(ctx, c, out)
}

// Mknod makes a FIFO, socket or device node (or a regular file). The mount
// is nodev: a device node made here cannot be opened through it.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	defer n.m.timed("mknod", time.Now())
	d, errno := n.mutable()
	if errno != 0 {
		return nil, errno
	}
	c, err := d.Mknod(caller(ctx), name, fs.TypeFromUnix(mode)|fs.PermFromUnix(mode), userDev(dev))
	if err != nil {
		return nil, n.m.errno("mknod", err)
	}
	return n.child(ctx, c, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	defer n.m.timed("unlink", time.Now())
	d, errno := n.mutable()
	if errno != 0 {
		return errno
	}
	return n.m.errno("unlink", d.Unlink(uninterrupted(ctx), name))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	defer n.m.timed("rmdir", time.Now())
	d, errno := n.mutable()
	if errno != 0 {
		return errno
	}
	return n.m.errno("rmdir", d.Rmdir(uninterrupted(ctx), name))
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	defer n.m.timed("rename", time.Now())
	d, errno := n.mutable()
	if errno != 0 {
		return errno
	}
	np, ok := newParent.(*node)
	if !ok {
		return syscall.EXDEV
	}
	nd, ok := np.core.(fs.MutableDir)
	if !ok {
		return syscall.EXDEV
	}
	return n.m.errno("rename", d.Rename(uninterrupted(ctx), name, nd, newName, fs.RenameFlags(flags)))
}

// caller is ctx without cancellation (see uninterrupted), carrying the
// requesting user for the core: what they create is theirs.
func caller(ctx context.Context) context.Context {
	c := uninterrupted(ctx)
	if fc, ok := fuse.FromContext(ctx); ok {
		c = fs.WithCaller(c, fs.Owner{UID: fc.Uid, GID: fc.Gid})
	}
	return c
}
