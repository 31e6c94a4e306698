package gofuse

import (
	"context"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dvfs-project/dvfs/fs"
)

// mutable returns n's core directory if entries can be made in it:
// templates and the fixed top are read-only.
func (n *node) mutable() (fs.MutableDir, syscall.Errno) {
	if d, ok := n.core.(fs.MutableDir); ok {
		return d, 0
	}
	if _, ok := n.core.(fs.Dir); !ok {
		return nil, syscall.ENOTDIR
	}
	return nil, syscall.EROFS
}

func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	d, errno := n.mutable()
	if errno != 0 {
		return nil, nil, 0, errno
	}
	c, h, err := d.Create(uninterrupted(ctx), name, fsMode(mode), int(flags))
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
	d, errno := n.mutable()
	if errno != 0 {
		return nil, errno
	}
	c, err := d.Mkdir(uninterrupted(ctx), name, fsMode(mode))
	if err != nil {
		return nil, n.m.errno("mkdir", err)
	}
	return n.child(ctx, c, out)
}

func (n *node) Symlink(ctx context.Context, target, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	d, errno := n.mutable()
	if errno != 0 {
		return nil, errno
	}
	c, err := d.Symlink(uninterrupted(ctx), target, name)
	if err != nil {
		return nil, n.m.errno("symlink", err)
	}
	return n.child(ctx, c, out)
}

// Link: hard links are not supported; a clone file has one name.
func (n *node) Link(ctx context.Context, target gofs.InodeEmbedder, name string, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if _, errno := n.mutable(); errno != 0 {
		return nil, errno
	}
	return nil, syscall.EPERM
}

// Mknod: only regular files, directories and symlinks exist in dvfs.
func (n *node) Mknod(ctx context.Context, name string, mode uint32, dev uint32, out *fuse.EntryOut) (*gofs.Inode, syscall.Errno) {
	if _, errno := n.mutable(); errno != 0 {
		return nil, errno
	}
	return nil, syscall.EPERM
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	d, errno := n.mutable()
	if errno != 0 {
		return errno
	}
	return n.m.errno("unlink", d.Unlink(uninterrupted(ctx), name))
}

func (n *node) Rmdir(ctx context.Context, name string) syscall.Errno {
	d, errno := n.mutable()
	if errno != 0 {
		return errno
	}
	return n.m.errno("rmdir", d.Rmdir(uninterrupted(ctx), name))
}

func (n *node) Rename(ctx context.Context, name string, newParent gofs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
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
