package gofuse

import (
	iofs "io/fs"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dvfs-project/dvfs/fs"
)

// fillAttr turns the core's attributes into the kernel's.
func (m *mount) fillAttr(out *fuse.Attr, a fs.Attr) {
	out.Ino = a.Ino
	out.Size = uint64(a.Size)
	out.Blocks = uint64(a.Blocks)
	out.Mode = unixMode(a.Mode)
	out.Nlink = a.Nlink
	out.Owner = fuse.Owner{Uid: m.uid, Gid: m.gid}
	// 64 KiB, the block size: programs that size their I/O by st_blksize
	// then write whole blocks, which a clone stores without reading.
	out.Blksize = 64 << 10
	mt := a.MTime
	out.SetTimes(&mt, &mt, &a.CTime)
}

// unixMode turns an io/fs mode into st_mode.
func unixMode(m iofs.FileMode) uint32 {
	mode := uint32(m.Perm())
	switch m.Type() {
	case iofs.ModeDir:
		mode |= syscall.S_IFDIR
	case iofs.ModeSymlink:
		mode |= syscall.S_IFLNK
	default:
		mode |= syscall.S_IFREG
	}
	if m&iofs.ModeSetuid != 0 {
		mode |= syscall.S_ISUID
	}
	if m&iofs.ModeSetgid != 0 {
		mode |= syscall.S_ISGID
	}
	if m&iofs.ModeSticky != 0 {
		mode |= syscall.S_ISVTX
	}
	return mode
}

// fsMode turns st_mode permission bits into an io/fs mode.
func fsMode(mode uint32) iofs.FileMode {
	m := iofs.FileMode(mode & 0o777)
	if mode&syscall.S_ISUID != 0 {
		m |= iofs.ModeSetuid
	}
	if mode&syscall.S_ISGID != 0 {
		m |= iofs.ModeSetgid
	}
	if mode&syscall.S_ISVTX != 0 {
		m |= iofs.ModeSticky
	}
	return m
}
