package storetest_test

import (
	"context"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// The suite must be able to fail: each broken store below breaks one
// contract, and the subtest that guards it must catch it. They run in a
// child process, since a failing subtest would fail this test too.

const brokenEnv = "STORETEST_BROKEN"

var broken = []struct {
	mode    string // what the store gets wrong
	subtest string // the subtest that must fail
}{
	{"noverify", "Corrupt"},
	{"unordered", "Missing"},
	{"holes", "Missing"},
	{"nonatomic", "CommitMetaAtomic"},
	{"closed", "Closed"},
}

func TestSuiteCatchesBrokenStores(t *testing.T) {
	if os.Getenv(brokenEnv) != "" {
		return // in the child, which runs TestBrokenChild only
	}
	for _, b := range broken {
		t.Run(b.mode, func(t *testing.T) {
			cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^TestBrokenChild$/^"+b.subtest+"$", "-test.v")
			cmd.Env = append(os.Environ(), brokenEnv+"="+b.mode)
			out, err := cmd.CombinedOutput()
			if err == nil {
				t.Fatalf("the suite passed a store that gets %q wrong:\n%s", b.mode, out)
			}
			if !strings.Contains(string(out), "--- FAIL: TestBrokenChild/"+b.subtest) {
				t.Fatalf("subtest %s did not fail:\n%s", b.subtest, out)
			}
		})
	}
}

func TestBrokenChild(t *testing.T) {
	mode := os.Getenv(brokenEnv)
	if mode == "" {
		// Not a test of its own, in CI or anywhere: the child half of
		// TestSuiteCatchesBrokenStores, which runs it with brokenEnv set.
		return
	}
	open := func(t *testing.T) storetest.Store {
		s := &brokenStore{Store: memstore.New(), mode: mode, frames: map[blockstore.ID][]byte{}}
		t.Cleanup(func() { s.Close() })
		return s
	}
	storetest.Run(t, open, storetest.Options{
		Corrupt: func(t *testing.T, st storetest.Store, id blockstore.ID) {
			s := st.(*brokenStore)
			s.Store.Corrupt(id)
			s.mu.Lock()
			f := slices.Clone(s.frames[id])
			f[len(f)-1] ^= 1
			s.frames[id] = f
			s.mu.Unlock()
		},
	})
}

// brokenStore is a memstore with one fault, chosen by mode.
type brokenStore struct {
	*memstore.Store
	mode   string
	mu     sync.Mutex
	frames map[blockstore.ID][]byte // for noverify
}

func (s *brokenStore) Put(ctx context.Context, blocks ...blockstore.Block) error {
	s.mu.Lock()
	for _, b := range blocks {
		s.frames[b.ID] = slices.Clone(b.Frame)
	}
	s.mu.Unlock()
	return s.Store.Put(ctx, blocks...)
}

func (s *brokenStore) Get(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if s.mode != "noverify" {
		return s.Store.Get(ctx, id, dst)
	}
	s.mu.Lock()
	f, ok := s.frames[id]
	s.mu.Unlock()
	if !ok {
		return s.Store.Get(ctx, id, dst)
	}
	return blockstore.Decode(dst, f) // decodes, but never checks the hash
}

func (s *brokenStore) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	m, err := s.Store.Missing(ctx, ids)
	switch s.mode {
	case "unordered":
		slices.SortFunc(m, func(a, b blockstore.ID) int { return strings.Compare(string(a[:]), string(b[:])) })
	case "holes":
		for _, id := range ids {
			if id.IsHole() {
				m = append(m, id)
			}
		}
	}
	return m, err
}

func (s *brokenStore) CommitMeta(ctx context.Context, ops ...blockstore.MetaOp) error {
	if s.mode != "nonatomic" {
		return s.Store.CommitMeta(ctx, ops...)
	}
	for _, op := range ops {
		if err := s.Store.CommitMeta(ctx, op); err != nil {
			return err
		}
	}
	return nil
}

func (s *brokenStore) Close() error {
	if s.mode == "closed" {
		return nil // never closes
	}
	return s.Store.Close()
}
