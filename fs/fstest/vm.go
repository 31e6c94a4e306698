package fstest

import (
	"context"
	"fmt"
	iofs "io/fs"
	"time"
)

// The standard world: template "winxp" in two versions and clone "alice"
// made from version 2, shaped like a VMware VM folder.
const (
	Template = "winxp"
	Clone    = "alice"
	// BigSize is the size of big.vmdk: past 4 GiB, nearly all holes.
	BigSize = 5<<30 + 12345
)

// VMEntries returns the tree of version v of the standard template:
// a disk of 3 MiB and a bit with every fifth block a hole; a sparse disk
// past 4 GiB with data in its first, a middle and its last block; a .vmx,
// an nvram, a directory with a log, an empty file and a symlink.
// Versions differ in the disk's block 7 and in the .vmx.
func VMEntries(v int) []Entry {
	diskSeed := uint64(100)
	disk := Pattern(diskSeed, 5)
	if v > 1 {
		disk = func(i int64, p []byte) bool {
			if i == 7 {
				Fill(p, diskSeed+uint64(v), uint64(i))
				return true
			}
			return Pattern(diskSeed, 5)(i, p)
		}
	}
	vmx := fmt.Sprintf("displayName = \"winxp v%d\"\nmemsize = \"512\"\nscsi0:0.fileName = \"disk.vmdk\"\n", v)
	return []Entry{
		{Path: "big.vmdk", Mode: 0o644, Size: BigSize, Content: Sparse(7, 0, (BigSize/BlockSize)/2, BigSize/BlockSize)},
		{Path: "current.vmdk", Mode: iofs.ModeSymlink | 0o777, Target: "disk.vmdk"},
		{Path: "disk.vmdk", Mode: 0o644, Size: 3<<20 + 4321, Content: disk},
		{Path: "empty", Mode: 0o644},
		{Path: "logs", Mode: iofs.ModeDir | 0o755},
		{Path: "logs/vmware.log", Mode: 0o644, Size: 1000, Content: Pattern(3, 0)},
		{Path: "winxp.nvram", Mode: 0o644, Size: 8684, Content: Pattern(4, 0)},
		{Path: "winxp.vmx", Mode: 0o644, Size: int64(len(vmx)), Content: func(i int64, p []byte) bool {
			copy(p, vmx)
			return true
		}},
	}
}

// POSIXName names the template and the clone of POSIXEntries in POSIXWorld.
const POSIXName = "posix"

// nullRdev is Linux's device number of /dev/null, makedev(1, 3).
const nullRdev = 1<<8 | 3

// POSIXEntries is VMEntries(2) with what else a VM folder may hold: a
// second name of the disk (a hard link), QEMU's monitor socket and serial
// FIFO, a device node, and a file of another owner with its own atime.
func POSIXEntries() []Entry {
	return append(VMEntries(2),
		Entry{Path: "logs/disk.vmdk", Link: "disk.vmdk"},
		Entry{Path: "monitor.sock", Mode: iofs.ModeSocket | 0o755},
		Entry{Path: "serial.fifo", Mode: iofs.ModeNamedPipe | 0o600},
		Entry{Path: "null", Mode: iofs.ModeDevice | iofs.ModeCharDevice | 0o644, Rdev: nullRdev},
		Entry{Path: "owned.txt", Mode: 0o640, Size: 100, Content: Pattern(9, 0), UID: 1234, GID: 5678,
			ATime: time.Unix(1<<32, 987654321)},
	)
}

// POSIXWorld returns a world with template and clone POSIXName, both of
// POSIXEntries.
func POSIXWorld(ctx context.Context) (*World, error) {
	w := NewWorld()
	if _, err := w.AddTemplate(ctx, POSIXName, POSIXEntries()); err != nil {
		return nil, err
	}
	if _, err := w.AddClone(ctx, POSIXName, POSIXEntries()); err != nil {
		return nil, err
	}
	return w, nil
}

// Entry returns the entry of the standard tree of version v at path.
func VMEntry(v int, path string) Entry {
	for _, e := range VMEntries(v) {
		if e.Path == path {
			return e
		}
	}
	panic("fstest: no entry " + path)
}

// StandardWorld returns a world with the standard template (versions 1
// and 2) and the standard clone, made from version 2.
func StandardWorld(ctx context.Context) (*World, error) {
	w := NewWorld()
	for v := 1; v <= 2; v++ {
		if _, err := w.AddTemplate(ctx, Template, VMEntries(v)); err != nil {
			return nil, err
		}
	}
	if _, err := w.AddClone(ctx, Clone, VMEntries(2)); err != nil {
		return nil, err
	}
	return w, nil
}
