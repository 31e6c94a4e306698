//go:build linux

package gofuse

import (
	"context"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dvfs-project/dvfs/fs"
)

// handle is an open file.
type handle struct {
	m *mount
	h fs.Handle
}

func (h *handle) Read(ctx context.Context, dest []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	defer h.m.timed("read", time.Now())
	n, err := h.h.ReadAt(ctx, dest, off)
	if err != nil {
		return nil, h.m.errno("read", err)
	}
	return fuse.ReadResultData(dest[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	defer h.m.timed("write", time.Now())
	w, ok := h.h.(fs.WriteHandle)
	if !ok {
		return 0, syscall.EBADF
	}
	n, err := w.WriteAt(ctx, data, off)
	if err != nil && n == 0 {
		return 0, h.m.errno("write", err)
	}
	return uint32(n), 0 // a short write; the caller's retry gets the error
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	defer h.m.timed("fsync", time.Now())
	w, ok := h.h.(fs.WriteHandle)
	if !ok {
		return 0
	}
	return h.m.errno("fsync", w.Sync(uninterrupted(ctx), flags&1 != 0))
}

// Flush (each close(2)) does nothing: Release commits, and fsync is the
// way to wait for durability.
func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

func (h *handle) Release(ctx context.Context) syscall.Errno {
	defer h.m.timed("release", time.Now())
	// The kernel does not wait for RELEASE, and the caller is gone: the
	// commit runs on its own context.
	return h.m.errno("release", h.h.Release(uninterrupted(ctx)))
}

func (h *handle) Allocate(ctx context.Context, off uint64, size uint64, mode uint32) syscall.Errno {
	defer h.m.timed("fallocate", time.Now())
	w, ok := h.h.(fs.WriteHandle)
	if !ok {
		return syscall.EBADF
	}
	return h.m.errno("fallocate", w.Allocate(uninterrupted(ctx), int64(off), int64(size), fs.AllocMode(mode)))
}
