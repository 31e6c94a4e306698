package gofuse

import (
	iofs "io/fs"
	"syscall"

	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/fs"
)

// fillAttr turns the core's attributes into the kernel's.
func (m *mount) fillAttr(out *fuse.Attr, a fs.Attr) {
	out.Ino = a.Ino
	out.Size = uint64(a.Size)
	out.Blocks = uint64(a.Blocks)
	out.Mode = unixMode(a.Mode)
	out.Nlink = a.Nlink
	out.Owner = fuse.Owner{Uid: a.UID, Gid: a.GID}
	out.Rdev = kernelDev(a.Rdev)
	// 64 KiB, the block size: programs that size their I/O by st_blksize
	// then write whole blocks, which a clone stores without reading.
	out.Blksize = 64 << 10
	out.SetTimes(&a.ATime, &a.MTime, &a.CTime)
}

// kernelDev turns a device number from its Linux user-space form
// (unix.Mkdev) into the kernel's 32-bit encoding FUSE carries (12-bit
// major, 20-bit minor), and userDev turns it back.
func kernelDev(dev uint64) uint32 {
	major, minor := uint32(unix.Major(dev)), uint32(unix.Minor(dev))
	return minor&0xff | (major&0xfff)<<8 | (minor&^0xff)<<12
}

func userDev(dev uint32) uint64 {
	return unix.Mkdev((dev&0xfff00)>>8, dev&0xff|(dev>>12)&0xfff00)
}

// unixMode turns an io/fs mode into st_mode.
func unixMode(m iofs.FileMode) uint32 {
	mode := uint32(m.Perm())
	switch m.Type() {
	case iofs.ModeDir:
		mode |= syscall.S_IFDIR
	case iofs.ModeSymlink:
		mode |= syscall.S_IFLNK
	case iofs.ModeNamedPipe:
		mode |= syscall.S_IFIFO
	case iofs.ModeSocket:
		mode |= syscall.S_IFSOCK
	case iofs.ModeDevice:
		mode |= syscall.S_IFBLK
	case iofs.ModeDevice | iofs.ModeCharDevice:
		mode |= syscall.S_IFCHR
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

// fsType turns st_mode's type bits into an io/fs mode's.
func fsType(mode uint32) iofs.FileMode {
	switch mode & syscall.S_IFMT {
	case syscall.S_IFDIR:
		return iofs.ModeDir
	case syscall.S_IFLNK:
		return iofs.ModeSymlink
	case syscall.S_IFIFO:
		return iofs.ModeNamedPipe
	case syscall.S_IFSOCK:
		return iofs.ModeSocket
	case syscall.S_IFBLK:
		return iofs.ModeDevice
	case syscall.S_IFCHR:
		return iofs.ModeDevice | iofs.ModeCharDevice
	}
	return 0
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
