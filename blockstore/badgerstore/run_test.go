package badgerstore

import (
	"bytes"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// TestGetRun: GetRun fills the raw blocks of the size asked for, across
// pack stretches and gaps, and leaves to Get every block it must not
// fill: absent, compressed, short, corrupt on disk, deleted, and the hole.
func TestGetRun(t *testing.T) {
	const size = blockstore.DefaultBlockSize
	s := openT(t, disktest.TempDir(t))
	r := rand.New(rand.NewPCG(7, 7))
	var first, second []blockstore.Block
	for range 12 {
		first = append(first, storetest.NewBlock(storetest.RandomBytes(r, size)))
		second = append(second, storetest.NewBlock(storetest.RandomBytes(r, size)))
	}
	zstd := storetest.NewBlock(storetest.CompressibleBytes(r, size))
	short := storetest.NewBlock(storetest.RandomBytes(r, 1000))
	absent := storetest.NewBlock(storetest.RandomBytes(r, size))
	// Two Puts: two stretches of adjacent payloads.
	if err := s.Put(t.Context(), append(first, zstd, short)...); err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), second...); err != nil {
		t.Fatal(err)
	}
	corruptInDB(t, s, first[5].ID)
	if err := s.Delete(t.Context(), second[3].ID); err != nil {
		t.Fatal(err)
	}

	// The run, in the order a file might list them.
	var ids []blockstore.ID
	want := map[int][]byte{} // index in ids -> bytes it must hold
	add := func(b blockstore.Block, ok bool) {
		if ok {
			plain, err := blockstore.Open(b.ID, b.Frame, nil)
			if err != nil {
				t.Fatal(err)
			}
			want[len(ids)] = plain
		}
		ids = append(ids, b.ID)
	}
	for i, b := range first[:8] {
		add(b, i != 5) // 5 is corrupt
	}
	add(absent, false)
	add(zstd, false)
	add(short, false)
	ids = append(ids, blockstore.Hole)
	for i, b := range second {
		add(b, i != 3) // 3 was deleted
	}
	add(first[10], true) // out of order: a stretch of its own
	add(first[11], true)

	dst := bytes.Repeat([]byte{0xAA}, len(ids)*size)
	done := make([]bool, len(ids))
	if err := s.GetRun(t.Context(), ids, size, dst, done); err != nil {
		t.Fatal(err)
	}
	for i := range ids {
		w, ok := want[i]
		if done[i] != ok {
			t.Errorf("block %d: done %v, want %v", i, done[i], ok)
			continue
		}
		if ok && !bytes.Equal(dst[i*size:(i+1)*size], w) {
			t.Errorf("block %d: wrong bytes", i)
		}
	}

	// Get still tells why the corrupt block was left undone.
	expectNoData(t, s, first[5].ID, blockstore.ErrCorrupt)

	if err := s.GetRun(t.Context(), ids, size, dst[:size], done); err == nil {
		t.Error("GetRun into a buffer of the wrong size: no error")
	}
}

// TestDirectReads: a store opened as a workstation's cache opens it
// (DirectReads) reads a run of raw blocks into an aligned buffer with
// O_DIRECT, past the page cache, and into any other buffer through it; the
// bytes are right both ways, and a bit flipped in a pack is still caught.
func TestDirectReads(t *testing.T) {
	const size, n = blockstore.DefaultBlockSize, 16
	dir := disktest.TempDir(t)
	cfg := testConfig(t)
	cfg.Volatile, cfg.DirectWrites, cfg.VerifiedPuts, cfg.DirectReads = true, true, true, true
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	var blocks []blockstore.Block
	var ids []blockstore.ID
	var want []byte
	for range n {
		plain := storetest.RandomBytes(r, size)
		b := storetest.NewBlock(plain)
		blocks = append(blocks, b)
		ids = append(ids, b.ID)
		want = append(want, plain...)
	}
	if err := s.Put(t.Context(), blocks...); err != nil {
		t.Fatal(err)
	}
	// Linux takes O_DIRECT on the test's file system (tmpfs and ext4
	// both); elsewhere the store reads through the page cache.
	direct := int64(0)
	if runtime.GOOS == "linux" {
		direct = n * size
	}
	read := func(s *Store, dst []byte) []bool {
		t.Helper()
		done := make([]bool, n)
		if err := s.GetRun(t.Context(), ids, size, dst, done); err != nil {
			t.Fatal(err)
		}
		return done
	}
	aligned := diskio.AlignedBuffer(n * size)
	for i, ok := range read(s, aligned) {
		if !ok || !bytes.Equal(aligned[i*size:(i+1)*size], want[i*size:(i+1)*size]) {
			t.Fatalf("aligned buffer, block %d: done %v or wrong bytes", i, ok)
		}
	}
	if got := s.Stats().DirectReadBytes; got != direct {
		t.Fatalf("read %d bytes with O_DIRECT into an aligned buffer, want %d", got, direct)
	}
	unaligned := diskio.AlignedBuffer(n*size + 1)[1:]
	for i, ok := range read(s, unaligned) {
		if !ok || !bytes.Equal(unaligned[i*size:(i+1)*size], want[i*size:(i+1)*size]) {
			t.Fatalf("unaligned buffer, block %d: done %v or wrong bytes", i, ok)
		}
	}
	if got := s.Stats().DirectReadBytes; got != direct {
		t.Fatalf("read %d bytes with O_DIRECT in all after an unaligned read, want %d", got, direct)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// A flipped bit in the pack: that block is left undone, the rest read.
	flipInPacks(t, dir, want[5*size:6*size])
	s, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, ok := range read(s, aligned) {
		if ok != (i != 5) {
			t.Errorf("after a flip in block 5: block %d done %v", i, ok)
		}
	}
	expectNoData(t, s, ids[5], blockstore.ErrCorrupt)
}
