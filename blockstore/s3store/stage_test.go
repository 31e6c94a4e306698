package s3store

import (
	"errors"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

func TestConformanceStaged(t *testing.T) {
	srv := s3test.Start(t)
	open := func(t *testing.T) storetest.Store { return storetest.ViaStage{StagerStore: openT(t, srv, Config{})} }
	storetest.Run(t, open, storetest.Options{Corrupt: func(t *testing.T, st storetest.Store, id blockstore.ID) {
		corruptInPack(t, st.(storetest.ViaStage).StagerStore, id)
	}})
}

// TestStagedPacksFill: many small Stages, as a server takes uploads, fill
// whole packs (one PUT each) whose blocks stay missing until one
// CommitStaged indexes them all.
func TestStagedPacksFill(t *testing.T) {
	srv := s3test.Start(t)
	cnt := newCounter()
	const packSize = 4 << 20
	s := openT(t, srv, Config{Transport: cnt, PackSize: packSize})
	cnt.take()
	ctx := t.Context()
	r := rand.New(rand.NewPCG(5, 6))
	var all []blockstore.Block
	var sts []blockstore.Staged
	for range 16 {
		var batch []blockstore.Block
		for range 8 {
			batch = append(batch, storetest.NewBlock(storetest.RandomBytes(r, blockstore.DefaultBlockSize)))
		}
		st, err := s.Stage(ctx, batch...)
		if err != nil {
			t.Fatal(err)
		}
		if st.Blocks() != len(batch) {
			t.Fatalf("Stage of %d new blocks staged %d", len(batch), st.Blocks())
		}
		sts = append(sts, st)
		all = append(all, batch...)
	}
	if missing, err := s.Missing(ctx, storetest.IDs(all)); err != nil || len(missing) != len(all) {
		t.Fatalf("before CommitStaged Missing = %d of %d, %v", len(missing), len(all), err)
	}
	if _, err := s.Get(ctx, all[0].ID, nil); !errors.Is(err, blockstore.ErrNotFound) {
		t.Fatalf("Get of a staged block before its commit: %v, want ErrNotFound", err)
	}
	if err := s.CommitStaged(ctx, sts); err != nil {
		t.Fatal(err)
	}
	want := len(splitSizes(all, packSize))
	if n := cnt.take(); n[http.MethodPut] != want {
		t.Errorf("16 Stages of 512 KiB and a commit: %v requests, want %d PUTs (full packs)", n, want)
	}
	if missing, err := s.Missing(ctx, storetest.IDs(all)); err != nil || len(missing) != 0 {
		t.Fatalf("after CommitStaged Missing = %d, %v", len(missing), err)
	}
	for _, b := range all {
		if got, err := s.Get(ctx, b.ID, nil); err != nil || blockstore.Sum(got) != b.ID {
			t.Fatalf("Get %s after CommitStaged: %v", b.ID.Short(), err)
		}
	}
	s.inflightMu.Lock()
	defer s.inflightMu.Unlock()
	if len(s.inflight) != 0 {
		t.Errorf("packs still held from Compact after CommitStaged: %d", len(s.inflight))
	}
}
