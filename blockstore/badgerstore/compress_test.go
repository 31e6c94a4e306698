package badgerstore

import (
	"math/rand/v2"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// TestCompressDeferredFreesSpace: compressing deferred blocks gives back
// the space of their plain copies, and the compressed blocks survive a
// reopen.
func TestCompressDeferredFreesSpace(t *testing.T) {
	ctx := t.Context()
	dir := t.TempDir()
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
