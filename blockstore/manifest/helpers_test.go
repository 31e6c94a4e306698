package manifest

import (
	"crypto/ed25519"
	"encoding/binary"
	"io/fs"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Test fixtures shared by the tests, the fuzz targets and the benchmarks.

var t0 = time.Date(2025, 3, 14, 9, 26, 53, 589793238, time.UTC)

// testKey is a fixed key, so signed seeds are the same on every run.
var testKey = ed25519.NewKeyFromSeed([]byte("dvfs manifest test key, 32 bytes"))

func testPub() ed25519.PublicKey { return testKey.Public().(ed25519.PublicKey) }

// testID returns a distinct non-hole ID for each i.
func testID(i int) blockstore.ID {
	return blockstore.Sum(binary.LittleEndian.AppendUint64(nil, uint64(i)))
}

// diskBlocks returns n blocks of a sparse virtual disk: runs of holes of
// various lengths, data, and a few blocks repeated (the same zeroed-then-
// formatted sector pattern written in many places).
func diskBlocks(n int) []blockstore.ID {
	ids := make([]blockstore.ID, n)
	for i := range ids {
		switch {
		case i%1000 >= 700: // a free region
		case i%97 == 0:
			ids[i] = testID(-1) // a repeated block
		case i%13 == 5: // a lone hole
		default:
			ids[i] = testID(i)
		}
	}
	return ids
}

// vmwareManifest is a VMware Workstation folder: a 4 GiB sparse disk with
// mixed holes and data, small config files, a log directory and a symlink.
func vmwareManifest(diskBlockCount int) *Manifest {
	const bs = blockstore.DefaultBlockSize
	diskSize := int64(diskBlockCount)*bs - 1234
	small := func(path string, size int64, seed int) File {
		f := File{Path: path, Mode: 0o644, Size: size, MTime: t0.Add(-time.Duration(seed) * time.Hour)}
		for i := int64(0); i < size; i += bs {
			f.Blocks = append(f.Blocks, testID(1_000_000+seed*100+int(i/bs)))
		}
		return f
	}
	m := &Manifest{
		Kind:      KindTemplate,
		Name:      "win11-lab_2025.03",
		Version:   7,
		Parent:    6,
		Created:   t0,
		BlockSize: bs,
		Files: []File{
			{Path: "win11", Mode: fs.ModeDir | 0o755, MTime: t0},
			{Path: "win11/logs", Mode: fs.ModeDir | 0o755, MTime: t0},
			small("win11/logs/vmware.log", 301_442, 1),
			small("win11/win11.nvram", 270_840, 2),
			{Path: "win11/win11.vmdk", Mode: 0o600, Size: diskSize, MTime: t0, Blocks: diskBlocks(diskBlockCount)},
			small("win11/win11.vmsd", 0, 3),
			small("win11/win11.vmx", 3_182, 4),
			{Path: "win11/current.vmx", Mode: fs.ModeSymlink | 0o777, MTime: t0, Target: "win11.vmx"},
			{Path: "README.txt", Mode: 0o444, Size: 12, MTime: time.Unix(0, 0).UTC(), Blocks: []blockstore.ID{testID(42)}},
		},
	}
	slices.SortFunc(m.Files, func(a, b File) int { return strings.Compare(a.Path, b.Path) })
	return m
}

// smallManifest is a manifest small enough to truncate at every offset.
func smallManifest() *Manifest {
	return &Manifest{
		Kind:      KindTemplate,
		Name:      "tiny",
		Version:   1,
		Created:   t0,
		BlockSize: 4096,
		Files: []File{
			{Path: "d", Mode: fs.ModeDir | 0o755, MTime: t0},
			{Path: "d/disk.vmdk", Mode: 0o640, Size: 5*4096 + 1, MTime: t0,
				Blocks: []blockstore.ID{testID(1), {}, {}, testID(2), testID(1), {}}},
			{Path: "d/l", Mode: fs.ModeSymlink | 0o777, MTime: t0, Target: "disk.vmdk"},
		},
	}
}

// bigManifest has one file of n data blocks and no holes.
func bigManifest(n int) *Manifest {
	m := &Manifest{Kind: KindTemplate, Name: "big", Version: 1, Created: t0, BlockSize: blockstore.DefaultBlockSize}
	f := File{Path: "disk-flat.vmdk", Mode: 0o644, Size: int64(n) * blockstore.DefaultBlockSize, MTime: t0, Blocks: make([]blockstore.ID, n)}
	for i := range f.Blocks {
		f.Blocks[i] = testID(i)
	}
	m.Files = []File{f}
	return m
}

func mustMarshal(tb interface{ Fatal(...any) }, m *Manifest) []byte {
	b, err := m.MarshalBinary()
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// mkdev is unix.Mkdev of Linux: a device number in the form File.Rdev
// holds.
func mkdev(major, minor uint32) uint64 {
	return uint64(major&0x00000fff)<<8 | uint64(major&0xfffff000)<<32 |
		uint64(minor&0x000000ff) | uint64(minor&0xffffff00)<<12
}

// hardLink returns another name, path, of the entry to.
func hardLink(path string, to File) File {
	to.Path, to.Link = path, to.Path
	return to
}

// everyKindManifest is a format-2 manifest with owners and every kind of
// entry: a Linux guest tree with device nodes (one an overlayfs whiteout,
// 0:0), a named pipe, a socket, setuid and sticky bits, access times, and
// hard links to a regular file (twice, one in another directory), a
// symlink and a device.
func everyKindManifest() *Manifest {
	atime := t0.Add(90 * time.Minute)
	disk := File{Path: "home/alice/disk.img", Mode: 0o640, Size: 3*4096 - 10, MTime: t0, ATime: atime, UID: 1000, GID: 1000,
		Blocks: []blockstore.ID{testID(1), {}, testID(2)}}
	null := File{Path: "dev/null", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, MTime: t0, ATime: t0, Rdev: mkdev(1, 3)}
	link := File{Path: "home/alice/link", Mode: fs.ModeSymlink | 0o777, MTime: t0, UID: 1000, GID: 1000, Target: ".bashrc"}
	return &Manifest{
		Kind:      KindClone,
		Name:      "alice-debian",
		Version:   3,
		Parent:    2,
		Created:   t0,
		BlockSize: 4096,
		Owners:    true,
		Files: []File{
			{Path: "dev", Mode: fs.ModeDir | 0o755, MTime: t0, ATime: atime},
			{Path: "dev/console", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o600, MTime: t0, Rdev: mkdev(5, 1)},
			null,
			{Path: "dev/nvme0n1p1", Mode: fs.ModeDevice | 0o660, MTime: t0, GID: 6, Rdev: mkdev(259, 1<<20|1)},
			{Path: "dev/whiteout", Mode: fs.ModeDevice | fs.ModeCharDevice},
			hardLink("dev/zero-link", null),
			{Path: "home", Mode: fs.ModeDir | 0o755, MTime: t0},
			{Path: "home/alice", Mode: fs.ModeDir | fs.ModeSetgid | 0o750, MTime: t0, UID: 1000, GID: 1000},
			{Path: "home/alice/.bashrc", Mode: 0o644, Size: 3700, MTime: t0, ATime: atime, UID: 1000, GID: 1000, Blocks: []blockstore.ID{testID(3)}},
			disk,
			hardLink("home/alice/disk.img.bak", disk),
			{Path: "home/alice/fifo", Mode: fs.ModeNamedPipe | 0o600, MTime: t0, UID: 1000, GID: 1000},
			link,
			hardLink("home/alice/link2", link),
			{Path: "home/alice/sock", Mode: fs.ModeSocket | 0o755, MTime: t0, ATime: time.Unix(0, 0).UTC(), UID: 1000, GID: 1000},
			{Path: "nobody", Mode: fs.ModeSetuid | 0o755, MTime: t0, UID: math.MaxUint32, GID: math.MaxUint32},
			{Path: "tmp", Mode: fs.ModeDir | fs.ModeSticky | 0o777, MTime: t0},
			hardLink("tmp/x", disk),
		},
	}
}
