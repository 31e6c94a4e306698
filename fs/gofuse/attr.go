//go:build linux

package gofuse

import (
	"github.com/hanwen/go-fuse/v2/fuse"
	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/fs"
)

// fillAttr turns the core's attributes into the kernel's.
func (m *mount) fillAttr(out *fuse.Attr, a fs.Attr) {
	out.Ino = a.Ino
	out.Size = uint64(a.Size)
	out.Blocks = uint64(a.Blocks)
	out.Mode = fs.UnixMode(a.Mode)
	out.Nlink = a.Nlink
	out.Owner = fuse.Owner{Uid: a.UID, Gid: a.GID}
	out.Rdev = kernelDev(a.Rdev)
	out.Blksize = fs.IOBlockSize
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
