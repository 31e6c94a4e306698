package manifest

import (
	"reflect"
	"slices"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
)

func TestLookup(t *testing.T) {
	m := vmwareManifest(100)
	for i, f := range m.Files {
		t.Run(f.Path, func(t *testing.T) {
			got, ok := m.Lookup(f.Path)
			if !ok || got != &m.Files[i] {
				t.Fatalf("Lookup(%q) = %p, %v; want file %d", f.Path, got, ok, i)
			}
		})
	}
	for _, p := range []string{"", "README", "README.txt0", "win11/", "win11/logs/", "win11/x", "zzz", "A"} {
		t.Run("absent "+p, func(t *testing.T) {
			if f, ok := m.Lookup(p); ok || f != nil {
				t.Fatalf("Lookup(%q) found %q", p, f.Path)
			}
		})
	}
	if _, ok := (&Manifest{}).Lookup("a"); ok {
		t.Fatal("Lookup in an empty manifest found something")
	}
}

func TestBlockIDs(t *testing.T) {
	a, b, c := testID(1), testID(2), testID(3)
	m := &Manifest{Kind: KindTemplate, Name: "n", BlockSize: 4096, Files: []File{
		{Path: "x", Size: 5 * 4096, Blocks: []blockstore.ID{b, {}, a, b, {}}},
		{Path: "y", Size: 4 * 4096, Blocks: []blockstore.ID{{}, c, a, c}},
		{Path: "z", Size: 1, Blocks: []blockstore.ID{{}}},
	}}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	if got, want := slices.Collect(m.BlockIDs()), []blockstore.ID{b, a, c}; !reflect.DeepEqual(got, want) {
		t.Fatalf("BlockIDs = %v, want %v (distinct, first-seen order, no holes)", got, want)
	}
	var first []blockstore.ID
	for id := range m.BlockIDs() {
		first = append(first, id)
		break
	}
	if !reflect.DeepEqual(first, []blockstore.ID{b}) {
		t.Fatalf("stopping early gave %v", first)
	}
	want := Stats{Files: 3, Bytes: 9*4096 + 1, Blocks: 10, DistinctBlocks: 3, HoleBlocks: 4}
	if got := m.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
}

func TestStats(t *testing.T) {
	m := vmwareManifest(65536)
	s := m.Stats()
	disk, _ := m.Lookup("win11/win11.vmdk")
	holes, distinct := 0, map[blockstore.ID]bool{}
	for _, f := range m.Files {
		for _, id := range f.Blocks {
			if id.IsHole() {
				holes++
			} else {
				distinct[id] = true
			}
		}
	}
	want := Stats{
		Files: 6, Dirs: 2, Symlinks: 1,
		Bytes:          disk.Size + 301_442 + 270_840 + 3_182 + 12,
		Blocks:         65536 + 5 + 5 + 1 + 1,
		DistinctBlocks: len(distinct),
		HoleBlocks:     holes,
	}
	if s != want {
		t.Fatalf("Stats = %+v, want %+v", s, want)
	}
	if s.HoleBlocks < 65536/4 || s.DistinctBlocks >= s.Blocks-s.HoleBlocks {
		t.Fatalf("fixture lacks holes or repeats: %+v", s)
	}
}

// Hard links count in HardLinks only, and special files in Specials.
func TestStatsFormat2(t *testing.T) {
	m := everyKindManifest()
	want := Stats{
		Files: 3, Dirs: 4, Symlinks: 1, Specials: 6, HardLinks: 4,
		Bytes:          3700 + 3*4096 - 10,
		Blocks:         1 + 3,
		DistinctBlocks: 3,
		HoleBlocks:     1,
	}
	if got := m.Stats(); got != want {
		t.Fatalf("Stats = %+v, want %+v", got, want)
	}
	if got, want := slices.Collect(m.BlockIDs()), []blockstore.ID{testID(3), testID(1), testID(2)}; !reflect.DeepEqual(got, want) {
		t.Fatalf("BlockIDs = %v, want %v", got, want)
	}
}

// BlockIDs does not read hard links' Blocks: they are their files'. (This
// manifest, whose link lists other blocks, is not valid; BlockIDs does not
// check.)
func TestBlockIDsSkipsHardLinks(t *testing.T) {
	a, b := testID(1), testID(2)
	m := &Manifest{Kind: KindTemplate, Name: "n", BlockSize: 4096, Files: []File{
		{Path: "a", Size: 4096, Blocks: []blockstore.ID{a}},
		{Path: "b", Size: 4096, Blocks: []blockstore.ID{b}, Link: "a"},
	}}
	if got, want := slices.Collect(m.BlockIDs()), []blockstore.ID{a}; !reflect.DeepEqual(got, want) {
		t.Fatalf("BlockIDs = %v, want %v", got, want)
	}
}

func TestBlockRange(t *testing.T) {
	f := &File{Path: "a", Size: 2*4096 + 100, Blocks: make([]blockstore.ID, 3)}
	tests := []struct {
		i     int
		off   int64
		n     int
		panic bool
	}{
		{0, 0, 4096, false},
		{1, 4096, 4096, false},
		{2, 8192, 100, false},
		{3, 0, 0, true},
		{-1, 0, 0, true},
	}
	for _, tt := range tests {
		t.Run("", func(t *testing.T) {
			defer func() {
				if r := recover(); (r != nil) != tt.panic {
					t.Fatalf("BlockRange(%d) panic = %v, want panic %v", tt.i, r, tt.panic)
				}
			}()
			off, n := f.BlockRange(4096, tt.i)
			if off != tt.off || n != tt.n {
				t.Fatalf("BlockRange(%d) = %d, %d; want %d, %d", tt.i, off, n, tt.off, tt.n)
			}
		})
	}
	// A file of whole blocks ends on a full block; a large one does not
	// overflow.
	big := &File{Size: 1 << 40, Blocks: make([]blockstore.ID, 1<<24)}
	if off, n := big.BlockRange(1<<16, 1<<24-1); off != 1<<40-1<<16 || n != 1<<16 {
		t.Fatalf("last block of 1 TiB = %d, %d", off, n)
	}
}
