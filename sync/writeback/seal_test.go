package writeback

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"math/bits"
	"os"
	"sync/atomic"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// fakeOverlay is one clone with one regular file, all blocks local.
type fakeOverlay struct {
	blocks [][]byte
	dirty  []int64
	reads  atomic.Int64
	// sectorReads counts ReadSectors calls.
	sectorReads atomic.Int64
	failAt      int64 // block whose read fails (-1: none)
	cleared     bool  // the last Seal's fn succeeded
	// entry, if set, fills in the entry's base and sector fields.
	entry func(*Entry)
}

func (o *fakeOverlay) Seal(ctx context.Context, clone string, fn func([]Entry, Reader) error) error {
	var size int64
	for _, b := range o.blocks {
		size += int64(len(b))
	}
	local := make([]uint64, (len(o.blocks)+63)/64)
	for i := range o.blocks {
		local[i/64] |= 1 << (i % 64)
	}
	e := Entry{Path: "disk", Ino: 7, Mode: 0o644, Size: size, Local: local, Dirty: o.dirty}
	if o.entry != nil {
		o.entry(&e)
	}
	err := fn([]Entry{e}, fakeReader{o})
	o.cleared = err == nil
	if err == nil {
		o.dirty = nil
	}
	return err
}

func (o *fakeOverlay) Drop(context.Context, string) error { return nil }

type fakeReader struct{ o *fakeOverlay }

func (r fakeReader) ReadBlock(ino uint64, b int64, dst []byte) ([]byte, error) {
	r.o.reads.Add(1)
	if b == r.o.failAt {
		return nil, errors.New("read failed")
	}
	return append(dst[:0], r.o.blocks[b]...), nil
}

// ReadSectors: every sector of the fake's blocks is local.
func (r fakeReader) ReadSectors(ino uint64, b int64, mask uint64, dst []byte) ([]byte, error) {
	r.o.sectorReads.Add(1)
	for m := mask; m != 0; m &= m - 1 {
		off := bits.TrailingZeros64(m) * blockstore.CVSector
		dst = append(dst, r.o.blocks[b][off:off+blockstore.CVSector]...)
	}
	return dst, nil
}

func newSealTest(t *testing.T, ov *fakeOverlay) *cloneWB {
	ob, err := openOutbox(disktest.TempDir(t))
	if err != nil {
		t.Fatal(err)
	}
	w := &Writeback{cfg: Config{Overlay: ov}, log: slog.New(slog.DiscardHandler), outbox: ob}
	return &cloneWB{w: w, name: "c", base: &manifest.Manifest{BlockSize: 4096}}
}

func TestSeal(t *testing.T) {
	const n = 50
	ov := &fakeOverlay{failAt: -1}
	for i := range n {
		b := testBlock(9, i, 4096)
		switch {
		case i == 10:
			b = make([]byte, 4096) // zeros: the hole
		case i == 20:
			b = bytes.Clone(ov.blocks[5]) // a duplicate
		case i == n-1:
			b = b[:1000] // short last block
		}
		ov.blocks = append(ov.blocks, b)
		ov.dirty = append(ov.dirty, int64(i))
	}
	c := newSealTest(t, ov)
	ctx := context.Background()

	check := func(s sealed, wantBlocks int) {
		t.Helper()
		f := s.m.Files[0]
		for i, p := range ov.blocks {
			want := blockstore.Sum(p)
			if i == 10 {
				want = blockstore.Hole
			}
			if f.Blocks[i] != want {
				t.Fatalf("block %d: ID %s, want %s", i, f.Blocks[i].Short(), want.Short())
			}
		}
		if s.blocks != wantBlocks {
			t.Fatalf("outbox holds %d blocks, want %d", s.blocks, wantBlocks)
		}
		if wantBlocks == 0 {
			if s.file != "" {
				t.Fatalf("a seal with no new blocks made file %q", s.file)
			}
			return
		}
		got, err := readOutbox(c.w.outbox, s.file)
		if err != nil {
			t.Fatal(err)
		}
		for id, p := range got {
			if blockstore.Sum(p) != id {
				t.Fatalf("outbox block %s holds other bytes", id.Short())
			}
		}
		if len(got) != wantBlocks {
			t.Fatalf("outbox file holds %d blocks, want %d", len(got), wantBlocks)
		}
	}

	s, err := c.seal(ctx)
	if err != nil {
		t.Fatal(err)
	}
	check(s, n-2) // no hole, the duplicate once

	// Only the dirty block is read again.
	ov.blocks[3] = testBlock(10, 3, 4096)
	ov.dirty = []int64{3}
	ov.reads.Store(0)
	if s, err = c.seal(ctx); err != nil {
		t.Fatal(err)
	}
	if r := ov.reads.Load(); r != 1 {
		t.Fatalf("second seal read %d blocks, want 1", r)
	}
	check(s, 1)

	// Nothing changed: nothing read, no file.
	ov.reads.Store(0)
	if s, err = c.seal(ctx); err != nil {
		t.Fatal(err)
	}
	check(s, 0)

	// A failed seal keeps the marks, removes its file, and forgets what
	// it knew: the next seal reads every block.
	ov.blocks[4] = testBlock(11, 4, 4096)
	ov.dirty = []int64{4, 30}
	ov.failAt = 30
	if _, err := c.seal(ctx); err == nil {
		t.Fatal("seal with a failing read succeeded")
	}
	if ov.cleared || c.known != nil {
		t.Fatalf("after a failed seal: marks cleared %v, known %v", ov.cleared, c.known != nil)
	}
	// The successful seals' files are the writeback's to remove; the
	// failed one removed its own.
	des, _ := os.ReadDir(c.w.outbox.dir)
	if len(des) != 2 {
		t.Fatalf("outbox holds %d files after a failed seal, want the 2 of the good seals", len(des))
	}
	ov.failAt = -1
	ov.reads.Store(0)
	if s, err = c.seal(ctx); err != nil {
		t.Fatal(err)
	}
	if r := ov.reads.Load(); r != n {
		t.Fatalf("seal after a failure read %d blocks, want all %d", r, n)
	}
	check(s, n-2)
}

// TestEntryDelta: which changed blocks are sealed as a delta, against
// which block, with which sectors.
func TestEntryDelta(t *testing.T) {
	const bs, ss = 65536, 4096
	prevID, baseID := blockstore.Sum([]byte("prev")), blockstore.Sum([]byte("base"))
	bf := &manifest.File{Size: 4 * bs, Blocks: []blockstore.ID{baseID, baseID, blockstore.Hole, baseID}}
	prev := []idOK{{id: prevID, ok: true, full: true}, {}, {id: prevID, ok: true, full: false}, {}}
	for _, tc := range []struct {
		name    string
		b       int64
		e       Entry
		bf      *manifest.File
		want    blockstore.ID
		wantMsk uint64
	}{
		{"since the last seal", 0, Entry{BaseSize: 4 * bs}, bf, prevID, 0b10},
		{"not sealed before: the base block, local sectors", 1, Entry{BaseSize: 4 * bs}, bf, baseID, 0b110},
		{"last seal's block was short", 2, Entry{BaseSize: 4 * bs}, bf, blockstore.Hole, 0},
		{"cut short since: not the last seal's", 0, Entry{BaseSize: 4 * bs, Shrunk: true}, bf, baseID, 0b110},
		{"base cut below the block", 1, Entry{BaseSize: bs + 100}, bf, blockstore.Hole, 0},
		{"base block a hole", 3, Entry{BaseSize: 4 * bs}, &manifest.File{Size: 4 * bs, Blocks: make([]blockstore.ID, 4)}, blockstore.Hole, 0},
		{"a new file", 1, Entry{}, nil, blockstore.Hole, 0},
		{"too many sectors", 0, Entry{BaseSize: 4 * bs, DirtySectors: []uint64{0x1fff}}, bf, blockstore.Hole, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := tc.e
			e.SectorSize = ss
			if e.DirtySectors == nil {
				e.DirtySectors = []uint64{0b10}
			}
			e.LocalSectors = []uint64{0b110}
			d := e.delta(0, tc.b, bs, prev, tc.bf)
			if d.base != tc.want || d.ok() && (d.mask != tc.wantMsk || d.sectorSize != ss) {
				t.Fatalf("delta %+v, want base %s mask %b", d, tc.want.Short(), tc.wantMsk)
			}
		})
	}
}
