package server_test

import (
	"bytes"
	"context"
	"errors"
	"math/rand/v2"
	"net/http"
	"slices"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/repo"
)

const sector = 4096

// newBadgerEnv serves a repository over a real badger store.
func newBadgerEnv(t testing.TB, opts ...func(*repo.Config)) (*env, *badgerstore.Store) {
	t.Helper()
	st, err := badgerstore.Open(disktest.TempDir(t), badgerstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnvOn(t, st, opts...)
	t.Cleanup(func() {
		e.repo.Settle(context.Background())
		st.Close()
	})
	return e, st
}

func randomBlock(seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, 9))
	b := make([]byte, blockstore.DefaultBlockSize)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// changed returns base with sector i replaced by random bytes from seed,
// and the mask that says so.
func changed(base []byte, i int, seed uint64) ([]byte, uint64) {
	b := bytes.Clone(base)
	copy(b[i*sector:(i+1)*sector], randomBlock(seed))
	return b, 1 << i
}

func wholeRecord(plain []byte) []byte {
	return api.AppendBlock(nil, blockstore.Sum(plain), blockstore.Encode(nil, plain))
}

func deltaRecord(base, block []byte, mask uint64) []byte {
	return api.AppendBlock(nil, blockstore.Sum(block), blockstore.AppendDeltaFrame(nil, blockstore.Sum(base), sector, mask, block))
}

// fetchPlain fetches one block over HTTP and checks its bytes.
func fetchPlain(t *testing.T, c *client.Client, want []byte) {
	t.Helper()
	id := blockstore.Sum(want)
	got := 0
	err := c.FetchFrames(context.Background(), []blockstore.ID{id}, func(_ blockstore.ID, frame, plain []byte) error {
		got++
		if blockstore.IsDelta(frame) {
			t.Errorf("fetch of %s sent a delta frame", id.Short())
		}
		if !bytes.Equal(plain, want) {
			t.Errorf("fetch of %s: wrong bytes", id.Short())
		}
		return nil
	})
	if err != nil || got != 1 {
		t.Fatalf("fetch %s: %d blocks, %v", id.Short(), got, err)
	}
}

// commitTemplate commits a template version of one file naming plains.
func commitTemplate(t testing.TB, c *client.Client, name string, plains ...[]byte) uint64 {
	t.Helper()
	f := manifest.File{Path: "disk.vmdk", Mode: 0o644, MTime: time.Unix(1, 0)}
	for _, p := range plains {
		f.Blocks = append(f.Blocks, blockstore.Sum(p))
		f.Size += int64(len(p))
	}
	info, err := c.Commit(context.Background(), &manifest.Manifest{Kind: manifest.KindTemplate, Name: name, BlockSize: blockstore.DefaultBlockSize, Files: []manifest.File{f}})
	if err != nil {
		t.Fatalf("commit %s: %v", name, err)
	}
	return info.Version
}

func missing(t *testing.T, c *client.Client, plains ...[]byte) []blockstore.ID {
	t.Helper()
	var ids []blockstore.ID
	for _, p := range plains {
		ids = append(ids, blockstore.Sum(p))
	}
	m, err := c.Missing(context.Background(), ids)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestDeltaUploadAndFetch(t *testing.T) {
	e, st := newBadgerEnv(t)
	ctx := context.Background()
	base := randomBlock(1)
	if err := e.admin.Upload(ctx, wholeRecord(base)); err != nil {
		t.Fatal(err)
	}
	commitTemplate(t, e.admin, "xp", base)

	block, mask := changed(base, 3, 2)
	rec := deltaRecord(base, block, mask)
	if len(rec) > 2*sector {
		t.Fatalf("a one-sector delta record is %d bytes", len(rec))
	}
	if err := e.admin.Upload(ctx, rec); err != nil {
		t.Fatalf("upload delta: %v", err)
	}
	if m := missing(t, e.admin, block); len(m) != 0 {
		t.Fatal("a block stored as a delta counts as missing")
	}
	fetchPlain(t, e.admin, block)
	fetchPlain(t, e.admin, base)
	// It is kept as a delta: the block store does not hold it whole.
	if m, _ := st.Missing(ctx, []blockstore.ID{blockstore.Sum(block)}); len(m) != 1 {
		t.Fatal("the delta was stored whole")
	}
	// Sending it again, either way, is a no-op.
	if err := e.admin.Upload(ctx, rec); err != nil {
		t.Fatal(err)
	}
	// A delta on a base uploaded in the same batch, before it, is taken:
	// the server makes the batch's whole blocks durable first.
	base2 := randomBlock(3)
	block2, mask2 := changed(base2, 0, 4)
	if err := e.admin.Upload(ctx, append(wholeRecord(base2), deltaRecord(base2, block2, mask2)...)); err != nil {
		t.Fatalf("delta on a base of the same batch: %v", err)
	}
	fetchPlain(t, e.admin, block2)
	// A generation naming it commits: the commit sees it present.
	commitTemplate(t, e.admin, "xp", block, block2)
}

func TestDeltaRefused(t *testing.T) {
	e, _ := newBadgerEnv(t)
	ctx := context.Background()
	base := randomBlock(1)
	block, mask := changed(base, 5, 2)

	// Base missing: 409, and nothing of that block stored.
	other := randomBlock(7)
	err := e.admin.Upload(ctx, append(wholeRecord(other), deltaRecord(base, block, mask)...))
	var he *client.HTTPError
	var refused *api.DeltaRefusedError
	if !errors.As(err, &he) || he.Status != http.StatusConflict || !errors.Is(err, api.ErrDeltaRefused) || !errors.As(err, &refused) {
		t.Fatalf("delta without its base: %v", err)
	}
	if !slices.Equal(refused.BaseMissing, []blockstore.ID{blockstore.Sum(block)}) || len(refused.Mismatch) != 0 {
		t.Fatalf("refusal names %v / %v", refused.BaseMissing, refused.Mismatch)
	}
	if m := missing(t, e.admin, block, other); len(m) != 1 || m[0] != blockstore.Sum(block) {
		t.Fatalf("missing after a refused delta: %v (the whole block of the batch is kept, the delta is not)", m)
	}

	// Wrong hash: the record's ID is not what the delta rebuilds to.
	if err := e.admin.Upload(ctx, wholeRecord(base)); err != nil {
		t.Fatal(err)
	}
	forged := api.AppendBlock(nil, blockstore.Sum([]byte("something else")), blockstore.AppendDeltaFrame(nil, blockstore.Sum(base), sector, mask, block))
	err = e.admin.Upload(ctx, forged)
	if !errors.As(err, &he) || he.Status != http.StatusUnprocessableEntity || !errors.As(err, &refused) {
		t.Fatalf("forged delta: %v", err)
	}
	if len(refused.Mismatch) != 1 || refused.Mismatch[0] != blockstore.Sum([]byte("something else")) {
		t.Fatalf("refusal names %v / %v", refused.BaseMissing, refused.Mismatch)
	}
	// A base of another length does not fit: 422 too.
	short := base[:sector*2]
	err = e.admin.Upload(ctx, append(wholeRecord(short), deltaRecord(short, block, mask)...))
	if !errors.As(err, &he) || he.Status != http.StatusUnprocessableEntity || !errors.Is(err, api.ErrDeltaRefused) {
		t.Fatalf("delta on a base of another length: %v", err)
	}
	// A malformed delta frame is a bad upload, not a refusal.
	bad := deltaRecord(base, block, mask)
	bad = bad[:len(bad)-1]
	bad[blockstore.IDSize] -= 1 // the record's frame length
	err = e.admin.Upload(ctx, bad)
	if !errors.As(err, &he) || he.Status != http.StatusUnprocessableEntity || errors.Is(err, api.ErrDeltaRefused) {
		t.Fatalf("malformed delta frame: %v", err)
	}
	if m := missing(t, e.admin, block); len(m) != 1 {
		t.Fatal("a refused delta was stored")
	}
}

func TestDeltaChainCompaction(t *testing.T) {
	e, st := newBadgerEnv(t)
	ctx := context.Background()
	chain := [][]byte{randomBlock(1)}
	if err := e.admin.Upload(ctx, wholeRecord(chain[0])); err != nil {
		t.Fatal(err)
	}
	for i := 1; i <= repo.DefaultMaxDeltaDepth+2; i++ {
		next, mask := changed(chain[i-1], i%16, uint64(100+i))
		if err := e.admin.Upload(ctx, deltaRecord(chain[i-1], next, mask)); err != nil {
			t.Fatalf("delta %d: %v", i, err)
		}
		chain = append(chain, next)
	}
	for i, b := range chain {
		fetchPlain(t, e.admin, b)
		id := blockstore.Sum(b)
		inStore, _ := st.Missing(ctx, []blockstore.ID{id})
		ref, err := st.GetMeta(ctx, "dref/"+id.String())
		// Depths 1..8 are deltas; the 9th delta's base is at the bound,
		// so it is stored whole, and the 10th is a delta on it.
		whole := i == 0 || i == repo.DefaultMaxDeltaDepth+1
		wantDepth := i
		if i > repo.DefaultMaxDeltaDepth {
			wantDepth = i - repo.DefaultMaxDeltaDepth - 1
		}
		switch {
		case whole && (len(inStore) != 0 || err == nil):
			t.Errorf("block %d should be stored whole (in store: %v, delta record: %v)", i, len(inStore) == 0, err == nil)
		case !whole && (len(inStore) == 0 || err != nil || int(ref[len(ref)-1]) != wantDepth):
			t.Errorf("block %d should be a delta at depth %d (in store: %v, record %x, %v)", i, wantDepth, len(inStore) == 0, ref, err)
		}
	}
}

func TestDeltaGC(t *testing.T) {
	e, st := newBadgerEnv(t)
	ctx := context.Background()
	base := randomBlock(1)
	block, mask := changed(base, 15, 2)
	if err := e.admin.Upload(ctx, wholeRecord(base)); err != nil {
		t.Fatal(err)
	}
	v1 := commitTemplate(t, e.admin, "base", base)
	if err := e.admin.Upload(ctx, deltaRecord(base, block, mask)); err != nil {
		t.Fatal(err)
	}
	v2 := commitTemplate(t, e.admin, "delta", block)

	// No manifest names the base any more; the delta still needs it.
	if _, err := e.admin.Remove(ctx, "base", v1); err != nil {
		t.Fatal(err)
	}
	res, err := e.admin.GC(ctx)
	if err != nil || res.Deleted != 0 {
		t.Fatalf("gc: %+v, %v", res, err)
	}
	fetchPlain(t, e.admin, block)

	// Removing the last version that names the delta frees both.
	res, err = e.admin.Remove(ctx, "delta", v2)
	if err != nil || res.Deleted != 2 {
		t.Fatalf("remove and gc: %+v, %v; want both blocks deleted", res, err)
	}
	if m := missing(t, e.admin, base, block); len(m) != 2 {
		t.Fatalf("after gc %d of 2 blocks are left", 2-len(m))
	}
	for _, prefix := range []string{"dref/", "dfrm/"} {
		n := 0
		st.ListMeta(ctx, prefix, func(string, []byte) error { n++; return nil })
		if n != 0 {
			t.Errorf("%d %s records left after gc", n, prefix)
		}
	}
}
