package writeback

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/bits"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// cvBlocks is a cache of base blocks that keeps their sector chaining
// values, as sync/cache over badgerstore does; noCVs names blocks it holds
// without them.
type cvBlocks struct {
	blocks map[blockstore.ID][]byte
	noCVs  map[blockstore.ID]bool
}

func (c *cvBlocks) ReadBlock(_ context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	b, ok := c.blocks[id]
	if !ok {
		return dst, blockstore.ErrNotFound
	}
	return append(dst[:0], b...), nil
}

func (c *cvBlocks) SectorCVs(_ context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	b, ok := c.blocks[id]
	if !ok || c.noCVs[id] {
		return dst, blockstore.ErrNotFound
	}
	return blockstore.AppendSectorCVs(dst, b), nil
}

// TestSealSectorsOnly: a guest's 4 KiB writes into blocks of a cached base
// are sealed from the written sectors alone (no whole-block read), the
// outbox keeps only those sectors, the manifest holds the IDs the whole
// new blocks hash to, and a record rebuilt over its base (for a server
// that refused deltas) is the new block. A base without chaining values,
// or a block that became zeros, takes the whole-block way.
func TestSealSectorsOnly(t *testing.T) {
	const bs, n = blockstore.DefaultBlockSize, 6
	ctx := context.Background()
	src := &cvBlocks{blocks: map[blockstore.ID][]byte{}, noCVs: map[blockstore.ID]bool{}}
	bf := manifest.File{Path: "disk", Mode: 0o644, Size: n * bs}
	ov := &fakeOverlay{failAt: -1}
	var dirty, local []uint64
	for i := range n {
		base := testBlock(20, i, bs)
		id := blockstore.Sum(base)
		src.blocks[id] = base
		bf.Blocks = append(bf.Blocks, id)
		nb := bytes.Clone(base)
		var mask uint64 = 1<<(i%16) | 1<<((3*i+7)%16)
		if i == 4 {
			mask = 1<<16 - 1 // every sector: more than deltaMaxShare, whole
		}
		for s := range 16 {
			if mask&(1<<s) != 0 {
				copy(nb[s*blockstore.CVSector:], testBlock(21, i*16+s, blockstore.CVSector))
			}
		}
		if i == 2 {
			src.noCVs[id] = true
		}
		ov.blocks = append(ov.blocks, nb)
		ov.dirty = append(ov.dirty, int64(i))
		dirty, local = append(dirty, mask), append(local, mask)
	}
	// Block 5: its written sectors make it all zeros.
	zeros := make([]byte, bs)
	zid := blockstore.Sum(zeros[:bs/2])
	src.blocks[zid] = append(make([]byte, bs/2), testBlock(22, 0, bs/2)...)
	bf.Blocks[5] = blockstore.Sum(src.blocks[zid])
	src.blocks[bf.Blocks[5]] = src.blocks[zid]
	ov.blocks[5] = zeros
	dirty[5], local[5] = 0xff00, 0xff00

	ob, err := openOutbox(disktest.TempDir(t))
	if err != nil {
		t.Fatal(err)
	}
	w := &Writeback{cfg: Config{Overlay: ov, Blocks: src}, log: slog.New(slog.DiscardHandler), outbox: ob}
	c := &cloneWB{w: w, name: "c", base: &manifest.Manifest{BlockSize: bs, Files: []manifest.File{bf}}}
	ov.entry = func(e *Entry) {
		e.BasePath, e.BaseSize, e.SectorSize = "disk", n*bs, blockstore.CVSector
		e.DirtySectors, e.LocalSectors = dirty, local
	}
	s, err := c.seal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	f := s.m.Files[0]
	for i, p := range ov.blocks {
		want := blockstore.Sum(p)
		if i == 5 {
			want = blockstore.Hole
		}
		if f.Blocks[i] != want {
			t.Fatalf("block %d: ID %s, want %s", i, f.Blocks[i].Short(), want.Short())
		}
	}
	// Sectors only: blocks 0, 1 and 3 (2 has no chaining values, 4 goes
	// whole, 5 is the hole); whole reads: 2 and 4.
	if s.sectorsOnly != 3 || s.blocks != 5 || ov.reads.Load() != 2 {
		t.Fatalf("outbox: %d blocks, %d of them as sectors; %d whole reads; want 5, 3, 2", s.blocks, s.sectorsOnly, ov.reads.Load())
	}
	recs := 0
	err = ob.scan(ctx, s.file, func(id blockstore.ID, plain []byte, d delta) error {
		recs++
		i := -1
		for k, p := range ov.blocks {
			if blockstore.Sum(p) == id {
				i = k
			}
		}
		if i < 0 {
			t.Fatalf("outbox block %s is no block of the clone", id.Short())
		}
		if d.whole == 0 {
			if !bytes.Equal(plain, ov.blocks[i]) {
				t.Fatalf("whole record of block %d holds other bytes", i)
			}
			return nil
		}
		if d.whole != bs || d.base != bf.Blocks[i] || d.mask != local[i] || len(plain) != bits.OnesCount64(d.mask)*blockstore.CVSector {
			t.Fatalf("block %d: sectors record whole=%d base %s mask %x, %d bytes", i, d.whole, d.base.Short(), d.mask, len(plain))
		}
		got, err := c.rebuild(ctx, id, d, plain, nil)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, ov.blocks[i]) {
			t.Fatalf("block %d rebuilt over its base differs", i)
		}
		return nil
	})
	if err != nil || recs != 5 {
		t.Fatalf("scan: %v, %d records", err, recs)
	}
	// Blocks 0 and 1 written again in one more sector each: the next
	// seal goes against the blocks the first sealed, from the chaining
	// values it kept, reading only the new sectors.
	first := []blockstore.ID{f.Blocks[0], f.Blocks[1]}
	ov.dirty, dirty, local = []int64{0, 1}, []uint64{1 << 15, 1 << 14}, []uint64{local[0] | 1<<15, local[1] | 1<<14}
	copy(ov.blocks[0][15*blockstore.CVSector:], testBlock(23, 0, blockstore.CVSector))
	copy(ov.blocks[1][14*blockstore.CVSector:], testBlock(23, 1, blockstore.CVSector))
	ov.reads.Store(0)
	s2, err := c.seal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		if got, want := s2.m.Files[0].Blocks[i], blockstore.Sum(ov.blocks[i]); got != want {
			t.Fatalf("second seal, block %d: ID %s, want %s", i, got.Short(), want.Short())
		}
	}
	if s2.sectorsOnly != 2 || ov.reads.Load() != 0 {
		t.Fatalf("second seal: %d blocks as sectors, %d whole reads; want 2, 0", s2.sectorsOnly, ov.reads.Load())
	}
	err = ob.scan(ctx, s2.file, func(id blockstore.ID, plain []byte, d delta) error {
		if d.whole != bs || d.base != first[0] && d.base != first[1] || bits.OnesCount64(d.mask) != 1 || len(plain) != blockstore.CVSector {
			t.Fatalf("second seal's record: base %s mask %x whole %d, %d bytes", d.base.Short(), d.mask, d.whole, len(plain))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}

	// A base the cache no longer holds: the rebuild says so, and loses
	// nothing (the record stays for a retry).
	delete(src.blocks, bf.Blocks[0])
	err = ob.scan(ctx, s.file, func(id blockstore.ID, plain []byte, d delta) error {
		if d.whole != 0 && d.base == bf.Blocks[0] {
			if _, err := c.rebuild(ctx, id, d, plain, nil); !errors.Is(err, blockstore.ErrNotFound) {
				t.Fatalf("rebuild without the base: %v", err)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
