package badgerstore

import (
	"fmt"
	"math/rand/v2"
	"os"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// TestCompressDeferredFreesSpace: compressing deferred blocks gives back
// the space of their plain copies, and the compressed blocks survive a
// reopen.
func TestCompressDeferredFreesSpace(t *testing.T) {
	// CI runs this test in its Linux run (where this does not skip); only
	// the Wine run (.ci/wine), on Windows, skips it.
	disktest.SkipUnderWine(t, wineNoHoles)
	ctx := t.Context()
	dir := disktest.TempDir(t)
	cfg := testConfig(t)
	cfg.PackSize = 1 << 20
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	r := rand.New(rand.NewPCG(9, 9))
	var plains [][]byte
	var blocks []blockstore.Block
	for range 48 {
		p := storetest.CompressibleBytes(r, blockstore.DefaultBlockSize)
		plains = append(plains, p)
		blocks = append(blocks, blockstore.Block{ID: blockstore.Sum(p), Frame: blockstore.EncodeDeferred(nil, p)})
	}
	if err := s.Put(ctx, blocks...); err != nil {
		t.Fatal(err)
	}
	before := s.packs.usage()
	total := storetest.CompressAll(t, s, 16)
	after := s.packs.usage()
	t.Logf("compressed %d deferred blocks: disk use %d -> %d bytes", total, before, after)
	if total != len(blocks) {
		t.Errorf("compressed %d blocks, want %d", total, len(blocks))
	}
	if after > before/2 {
		t.Errorf("disk use %d -> %d bytes: the plain copies' space did not come back", before, after)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	for i, b := range blocks {
		got, err := s.Get(ctx, b.ID, nil)
		if err != nil || string(got) != string(plains[i]) {
			t.Fatalf("Get %s after reopening: %v", b.ID.Short(), err)
		}
		frame, err := s.GetFrame(ctx, b.ID, nil)
		if err != nil || blockstore.Deferred(frame) {
			t.Fatalf("GetFrame %s after reopening: deferred %v, %v", b.ID.Short(), blockstore.Deferred(frame), err)
		}
	}
}

const compressCrashEnv = "DVFS_BADGERSTORE_COMPRESS_CRASH_DIR"

// compressCrashBlocks are the deferred blocks of TestCompressSurvivesSIGKILL:
// compressible ones, which move, and random ones, which stay in place.
func compressCrashBlocks() []blockstore.Block {
	r := rand.New(rand.NewPCG(10, 10))
	var blocks []blockstore.Block
	for i := range 300 {
		p := storetest.CompressibleBytes(r, blockstore.DefaultBlockSize)
		if i%3 == 0 {
			p = storetest.RandomBytes(r, blockstore.DefaultBlockSize)
		}
		blocks = append(blocks, blockstore.Block{ID: blockstore.Sum(p), Frame: blockstore.EncodeDeferred(nil, p)})
	}
	return blocks
}

// TestCompressSurvivesSIGKILL kills a process compressing deferred blocks
// in the middle of a round, five times, each time further on: after each
// kill every block reads back byte-exact, and a last run finishes the job.
func TestCompressSurvivesSIGKILL(t *testing.T) {
	if dir := os.Getenv(compressCrashEnv); dir != "" {
		compressCrashChild(t, dir)
		return
	}
	dir := disktest.TempDir(t)
	blocks := compressCrashBlocks()
	for round, after := range []int{0, 1, 2, 3, 5} {
		// The child says "compressing", then "round" after each round:
		// kill it once it has done after more rounds, as the next begins.
		cmd, sc := startChild(t, "TestCompressSurvivesSIGKILL", compressCrashEnv, dir)
		seen := -1
		for seen < after && sc.Scan() {
			seen++
		}
		cmd.Process.Kill()
		cmd.Wait()
		if seen < after {
			t.Fatalf("round %d: the child ended after %d rounds", round, seen)
		}

		s := openT(t, dir)
		checkBlocks(t, s, blocks)
		left, _, err := s.findDeferred(t.Context(), len(blocks))
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("killed after %d more rounds: all %d blocks intact, %d still deferred", after, len(blocks), len(left))
		s.Close()
	}
	s := openT(t, dir)
	defer s.Close()
	storetest.CompressAll(t, s, 64)
	checkBlocks(t, s, blocks)
	if left, _, _ := s.findDeferred(t.Context(), len(blocks)); len(left) != 0 {
		t.Errorf("%d blocks deferred after compressing all", len(left))
	}
}

// compressCrashChild puts the blocks (a no-op for those already there),
// says "compressing" and compresses until it is killed.
func compressCrashChild(t *testing.T, dir string) {
	s, err := Open(dir, Config{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(t.Context(), compressCrashBlocks()...); err != nil {
		t.Fatal(err)
	}
	fmt.Println("compressing")
	for {
		n, err := s.CompressDeferred(t.Context(), 16)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			fmt.Println("round")
		}
	}
}
