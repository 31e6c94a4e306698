package repo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// newRepoOn returns a repository over st.
func newRepoOn(t *testing.T, st Store) *Repo {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	r, err := New(Config{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Settle(context.Background()) })
	return r
}

// badgerT opens the embedded store, whose uploads go through
// blockstore.Stager.
func badgerT(t *testing.T) *badgerstore.Store {
	t.Helper()
	st, err := badgerstore.Open(disktest.TempDir(t), badgerstore.Config{DirectWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// randomBlocks returns n verified blocks of size random bytes.
func randomBlocks(seed uint64, n, size int) []blockstore.Block {
	r := rand.New(rand.NewPCG(seed, 3))
	out := make([]blockstore.Block, n)
	for i := range out {
		p := make([]byte, size)
		for j := range p {
			p[j] = byte(r.Uint32())
		}
		out[i] = blockstore.Block{ID: blockstore.Sum(p), Frame: blockstore.Encode(nil, p)}
	}
	return out
}

func manifestOf(name string, blocks []blockstore.Block) *manifest.Manifest {
	f := manifest.File{Path: "disk.vmdk", Mode: 0o644, MTime: time.Unix(1, 0)}
	for _, b := range blocks {
		f.Blocks = append(f.Blocks, b.ID)
		f.Size += 4096
	}
	return &manifest.Manifest{Name: name, BlockSize: 4096, Files: []manifest.File{f}}
}

// TestAcceptThenCommit accepts batches from several uploaders at once and
// commits a manifest naming all of them right away: the commit waits for
// them to be stored, on a store that stages (badger) and on one that does
// not (memstore), and every batch's buffer is given back.
func TestAcceptThenCommit(t *testing.T) {
	for _, kind := range []string{"badger", "memstore"} {
		t.Run(kind, func(t *testing.T) {
			var st Store = memstore.New()
			if kind == "badger" {
				st = badgerT(t)
			}
			r := newRepoOn(t, st)
			ctx := t.Context()
			var all []blockstore.Block
			var released atomic.Int64
			var wg sync.WaitGroup
			var mu sync.Mutex
			for u := range 4 {
				wg.Go(func() {
					for i := range 10 {
						blocks := randomBlocks(uint64(u*100+i), 8, 4096)
						if err := r.Accept(ctx, blocks, func() { released.Add(1) }); err != nil {
							t.Error(err)
						}
						mu.Lock()
						all = append(all, blocks...)
						mu.Unlock()
					}
				})
			}
			wg.Wait()
			if _, err := r.Commit(ctx, manifestOf("xp", all)); err != nil {
				t.Fatalf("commit right after the uploads: %v", err)
			}
			if missing, err := r.Missing(ctx, storetest.IDs(all)); err != nil || len(missing) != 0 {
				t.Fatalf("after the commit %d blocks missing, %v", len(missing), err)
			}
			if err := r.Settle(ctx); err != nil {
				t.Fatal(err)
			}
			if n := released.Load(); n != 40 {
				t.Fatalf("%d of 40 buffers given back", n)
			}
		})
	}
}

// TestAcceptIdleCommit: blocks accepted and then left alone become present
// without any commit asking for them (the idle commit).
func TestAcceptIdleCommit(t *testing.T) {
	r := newRepoOn(t, badgerT(t))
	ctx := t.Context()
	blocks := randomBlocks(1, 4, 4096)
	if err := r.Accept(ctx, blocks, nil); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * idleCommit)
	for {
		missing, err := r.Missing(ctx, storetest.IDs(blocks))
		if err != nil {
			t.Fatal(err)
		}
		if len(missing) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d blocks still missing %v after the upload", len(missing), 10*idleCommit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// stuckStore is the embedded store whose Stage waits for unblock, or
// fails with fail: a disk that stalls or errs, on the real path.
type stuckStore struct {
	*badgerstore.Store
	unblock chan struct{}
	fail    error
}

func (s *stuckStore) Stage(ctx context.Context, blocks ...blockstore.Block) (blockstore.Staged, error) {
	if s.unblock != nil {
		<-s.unblock
	}
	if s.fail != nil {
		return nil, s.fail
	}
	return s.Store.Stage(ctx, blocks...)
}

// TestAcceptBackpressure: while the disk stalls, Accept takes up to
// maxQueued bytes and then holds the uploader back until its context
// ends; once the disk moves, everything is stored.
func TestAcceptBackpressure(t *testing.T) {
	st := &stuckStore{Store: badgerT(t), unblock: make(chan struct{})}
	r := newRepoOn(t, st)
	ctx := t.Context()
	const mib4 = blockstore.MaxBlockSize
	first := randomBlocks(1, maxQueued/mib4-2, mib4) // the writer takes it, and stalls
	second := randomBlocks(2, 1, mib4)               // still under maxQueued
	third := randomBlocks(3, 2, mib4)                // over it
	for _, b := range [][]blockstore.Block{first, second} {
		if err := r.Accept(ctx, b, nil); err != nil {
			t.Fatal(err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := r.Accept(short, third, nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Accept over maxQueued with the disk stalled: %v, want it held back", err)
	}
	close(st.unblock)
	if err := r.Accept(ctx, third, nil); err != nil {
		t.Fatal(err)
	}
	all := append(append(append([]blockstore.Block(nil), first...), second...), third...)
	if _, err := r.Commit(ctx, manifestOf("xp", all)); err != nil {
		t.Fatal(err)
	}
}

// TestAcceptStoreFails: blocks the store fails to write are missing, and a
// commit naming them is refused; their buffers are given back all the same.
func TestAcceptStoreFails(t *testing.T) {
	st := &stuckStore{Store: badgerT(t), fail: errors.New("disk on fire")}
	r := newRepoOn(t, st)
	ctx := t.Context()
	blocks := randomBlocks(1, 4, 4096)
	released := make(chan struct{})
	if err := r.Accept(ctx, blocks, func() { close(released) }); err != nil {
		t.Fatal(err)
	}
	var me *MissingError
	if _, err := r.Commit(ctx, manifestOf("xp", blocks)); !errors.As(err, &me) || len(me.IDs) != len(blocks) {
		t.Fatalf("commit naming blocks the store failed to write: %v", err)
	}
	<-released
}
