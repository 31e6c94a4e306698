package manifest

import (
	"crypto/ed25519"
	"encoding/binary"
	"io/fs"
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
