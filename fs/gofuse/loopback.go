package gofuse

import (
	"context"
	"fmt"
	"syscall"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountLoopback mounts go-fuse's own loopback of dir at mountpoint, with
// kernel passthrough off: every read and write goes through the daemon.
// It is the benchmarks' reference for the cost floor of a FUSE daemon that
// serves every request (bench/), not a part of dvfs.
func MountLoopback(dir, mountpoint string) (*Server, error) {
	root := &gofs.LoopbackRoot{Path: dir}
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return nil, err
	}
	root.Dev = uint64(st.Dev)
	root.NewNode = func(r *gofs.LoopbackRoot, _ *gofs.Inode, _ string, _ *syscall.Stat_t) gofs.InodeEmbedder {
		return &daemonPathNode{LoopbackNode: gofs.LoopbackNode{RootData: r}}
	}
	rootNode := root.NewNode(root, nil, "", &st)
	root.RootNode = rootNode
	srv, err := gofs.Mount(mountpoint, rootNode, &gofs.Options{
		MountOptions: fuse.MountOptions{FsName: "loopback", Name: "loopback", DisableXAttrs: true},
	})
	if err != nil {
		return nil, fmt.Errorf("mount loopback %s: %w", mountpoint, err)
	}
	return &Server{srv: srv, mountpoint: mountpoint}, nil
}

// daemonPathNode is a loopback node whose open files refuse passthrough.
type daemonPathNode struct {
	gofs.LoopbackNode
}

var _ = (gofs.NodeOpener)((*daemonPathNode)(nil))
var _ = (gofs.NodeCreater)((*daemonPathNode)(nil))

func (n *daemonPathNode) Open(ctx context.Context, flags uint32) (gofs.FileHandle, uint32, syscall.Errno) {
	fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
	return wrapDaemonPath(fh), fl, errno
}

func (n *daemonPathNode) Create(ctx context.Context, name string, flags, mode uint32, out *fuse.EntryOut) (*gofs.Inode, gofs.FileHandle, uint32, syscall.Errno) {
	in, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return in, wrapDaemonPath(fh), fl, errno
}

// noPassthrough hides the loopback file's PassthroughFd, so go-fuse does
// not hand the backing file to the kernel.
type noPassthrough struct {
	*gofs.LoopbackFile
}

func (noPassthrough) PassthroughFd() (int, bool) { return 0, false }

func wrapDaemonPath(fh gofs.FileHandle) gofs.FileHandle {
	if lf, ok := fh.(*gofs.LoopbackFile); ok {
		return noPassthrough{lf}
	}
	return fh
}
