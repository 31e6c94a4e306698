package badgerstore

import (
	"errors"
	"math/rand/v2"
	"sync"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

func TestConformanceStaged(t *testing.T) {
	runConformanceVia(t, func(s *Store) storetest.Store { return storetest.ViaStage{StagerStore: s} },
		func(st storetest.Store) *Store { return st.(storetest.ViaStage).StagerStore.(*Store) })
}

// TestStagedInvisibleUntilCommitted: staged blocks are missing, and not
// readable, until CommitStaged, which takes the Stages of several calls
// at once; a block present already is not staged again.
func TestStagedInvisibleUntilCommitted(t *testing.T) {
	s := openDirectT(t, disktest.TempDir(t))
	ctx := t.Context()
	a, b := testBlocks(1), testBlocks(2)
	sa, err := s.Stage(ctx, a...)
	if err != nil {
		t.Fatal(err)
	}
	sb, err := s.Stage(ctx, b...)
	if err != nil {
		t.Fatal(err)
	}
	if sa.Blocks() != len(a) || sb.Blocks() != len(b) {
		t.Fatalf("staged %d and %d blocks, want %d and %d", sa.Blocks(), sb.Blocks(), len(a), len(b))
	}
	all := append(append([]blockstore.Block(nil), a...), b...)
	if missing, err := s.Missing(ctx, storetest.IDs(all)); err != nil || len(missing) != len(all) {
		t.Fatalf("before the commit Missing = %d of %d, %v", len(missing), len(all), err)
	}
	if _, err := s.Get(ctx, a[0].ID, nil); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("Get of a staged block before its commit: %v, want ErrNotFound", err)
	}
	if err := s.CommitStaged(ctx, []blockstore.Staged{sa, sb}); err != nil {
		t.Fatal(err)
	}
	if missing, err := s.Missing(ctx, storetest.IDs(all)); err != nil || len(missing) != 0 {
		t.Fatalf("after the commit Missing = %d, %v", len(missing), err)
	}
	checkBlocks(t, s, all)

	again, err := s.Stage(ctx, a...)
	if err != nil || again.Blocks() != 0 {
		t.Fatalf("staging present blocks: %d staged, %v", again.Blocks(), err)
	}
	if err := s.CommitStaged(ctx, []blockstore.Staged{again}); err != nil {
		t.Fatal(err)
	}

	if err := s.CommitStaged(ctx, []blockstore.Staged{fakeStaged{}}); err == nil {
		t.Error("CommitStaged took a Staged another store made")
	}
}

type fakeStaged struct{}

func (fakeStaged) Blocks() int { return 1 }

// TestStagedLostWithoutCommit: a store closed between Stage and
// CommitStaged (as a crash would) reopens without the staged blocks and
// with everything committed before, and takes them again.
func TestStagedLostWithoutCommit(t *testing.T) {
	dir := disktest.TempDir(t)
	ctx := t.Context()
	kept, lost := testBlocks(4), testBlocks(5)
	s, err := Open(dir, Config{DirectWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Put(ctx, kept...); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Stage(ctx, lost...); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openDirectT(t, dir)
	checkBlocks(t, s, kept)
	if missing, err := s.Missing(ctx, storetest.IDs(lost)); err != nil || len(missing) != len(lost) {
		t.Fatalf("after reopening Missing = %d of %d staged blocks, %v", len(missing), len(lost), err)
	}
	if err := (storetest.ViaStage{StagerStore: s}).Put(ctx, lost...); err != nil {
		t.Fatal(err)
	}
	checkBlocks(t, s, lost)
}

// TestStageConcurrent stages and commits from several goroutines at once,
// with Puts beside them: every block ends up readable (go test -race
// checks the group commit's bookkeeping).
func TestStageConcurrent(t *testing.T) {
	s := openDirectT(t, disktest.TempDir(t))
	ctx := t.Context()
	var wg sync.WaitGroup
	var mu sync.Mutex
	var all []blockstore.Block
	for g := range 6 {
		wg.Go(func() {
			r := rand.New(rand.NewPCG(uint64(g), 7))
			var mine []blockstore.Block
			var staged []blockstore.Staged
			for i := range 8 {
				blocks := []blockstore.Block{
					storetest.NewBlock(storetest.RandomBytes(r, blockstore.DefaultBlockSize)),
					storetest.NewBlock(storetest.CompressibleBytes(r, 5000)),
				}
				mine = append(mine, blocks...)
				if g%3 == 0 {
					if err := s.Put(ctx, blocks...); err != nil {
						t.Error(err)
					}
					continue
				}
				st, err := s.Stage(ctx, blocks...)
				if err != nil {
					t.Error(err)
					return
				}
				staged = append(staged, st)
				if i%3 == 2 {
					if err := s.CommitStaged(ctx, staged); err != nil {
						t.Error(err)
					}
					staged = nil
				}
			}
			if err := s.CommitStaged(ctx, staged); err != nil {
				t.Error(err)
			}
			mu.Lock()
			all = append(all, mine...)
			mu.Unlock()
		})
	}
	wg.Wait()
	checkBlocks(t, s, all)
}
