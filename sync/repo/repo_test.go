package repo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
)

func newRepo(t *testing.T) (*Repo, *memstore.Store, *time.Time) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	st := memstore.New()
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	r, err := New(Config{Store: st, Key: key, Now: func() time.Time { return now }, GCGrace: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	return r, st, &now
}

// put stores blocks for the plain contents and returns a one-file manifest
// naming them.
func put(t *testing.T, r *Repo, name string, plains ...[]byte) *manifest.Manifest {
	t.Helper()
	var blocks []blockstore.Block
	f := manifest.File{Path: "disk.vmdk", Mode: 0o644, MTime: time.Unix(1, 0)}
	for _, p := range plains {
		id := blockstore.Sum(p)
		blocks = append(blocks, blockstore.Block{ID: id, Frame: blockstore.Encode(nil, p)})
		f.Blocks = append(f.Blocks, id)
		f.Size += int64(len(p))
	}
	if err := r.PutBlocks(context.Background(), blocks); err != nil {
		t.Fatal(err)
	}
	return &manifest.Manifest{Name: name, BlockSize: 4096, Files: []manifest.File{f}}
}

func block(b byte) []byte { p := make([]byte, 4096); p[0], p[1] = b, 1; return p }

func TestCommitAndSign(t *testing.T) {
	r, _, _ := newRepo(t)
	ctx := context.Background()
	info, err := r.Commit(ctx, put(t, r, "xp", block(1), block(2)))
	if err != nil {
		t.Fatal(err)
	}
	if info.Version != 1 || info.Parent != 0 || info.Blocks != 2 {
		t.Fatalf("info %+v", info)
	}
	info2, err := r.Commit(ctx, put(t, r, "xp", block(1), block(3)))
	if err != nil {
		t.Fatal(err)
	}
	if info2.Version != 2 || info2.Parent != 1 {
		t.Fatalf("second version %+v", info2)
	}
	signed, err := r.Signed(ctx, "xp", 0)
	if err != nil {
		t.Fatal(err)
	}
	m, _, err := manifest.Open(signed, r.PublicKey())
	if err != nil || m.Version != 2 {
		t.Fatalf("latest manifest: %v %+v", err, m)
	}
	_, other, _ := ed25519.GenerateKey(nil)
	if _, _, err := manifest.Open(signed, other.Public().(ed25519.PublicKey)); !errors.Is(err, manifest.ErrBadSignature) {
		t.Fatalf("foreign key accepted: %v", err)
	}
	list, err := r.List(ctx)
	if err != nil || len(list) != 1 || len(list[0].Versions) != 2 {
		t.Fatalf("list %v %+v", err, list)
	}
}

func TestCommitRefusesMissingBlocks(t *testing.T) {
	r, _, _ := newRepo(t)
	m := put(t, r, "xp", block(1))
	absent := blockstore.Sum(block(9))
	m.Files[0].Blocks = append(m.Files[0].Blocks, absent)
	m.Files[0].Size += 4096
	_, err := r.Commit(context.Background(), m)
	var me *MissingError
	if !errors.As(err, &me) || !slices.Equal(me.IDs, []blockstore.ID{absent}) {
		t.Fatalf("got %v, want the one missing block", err)
	}
	if list, _ := r.List(context.Background()); len(list) != 0 {
		t.Fatalf("a version appeared: %+v", list)
	}
}

func TestPutBlocksRefusesForgery(t *testing.T) {
	r, st, _ := newRepo(t)
	good := blockstore.Block{ID: blockstore.Sum(block(1)), Frame: blockstore.Encode(nil, block(1))}
	forged := blockstore.Block{ID: blockstore.Sum(block(2)), Frame: blockstore.Encode(nil, block(3))}
	err := r.PutBlocks(context.Background(), []blockstore.Block{good, forged})
	if !errors.Is(err, blockstore.ErrCorrupt) {
		t.Fatalf("forged block: got %v, want ErrCorrupt", err)
	}
	missing, _ := st.Missing(context.Background(), []blockstore.ID{good.ID, forged.ID})
	if len(missing) != 2 {
		t.Fatal("a batch with a forged block was partly stored")
	}
}

func TestGCKeepsLiveAndRecent(t *testing.T) {
	r, st, now := newRepo(t)
	ctx := context.Background()
	if _, err := r.Commit(ctx, put(t, r, "xp", block(1), block(2))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Commit(ctx, put(t, r, "xp", block(1), block(3))); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(2 * time.Minute)
	put(t, r, "other", block(4)) // uploaded, never committed
	if _, err := r.Remove(ctx, "xp", 1); err != nil {
		t.Fatal(err)
	}
	res, err := r.GC(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 1 || res.Skipped != 1 || res.Kept != 2 {
		t.Fatalf("gc %+v, want 1 deleted (block 2), 1 recent, 2 kept", res)
	}
	// Blocks of a removed version go at once, recent or not.
	put(t, r, "xp", block(5))
	if _, err := r.Commit(ctx, put(t, r, "xp", block(5))); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Remove(ctx, "xp", 3); err != nil {
		t.Fatal(err)
	}
	if res, _ := r.GC(ctx); res.Deleted != 1 {
		t.Fatalf("a removed version's fresh block was spared: %+v", res)
	}
	*now = now.Add(2 * time.Minute)
	if res, _ = r.GC(ctx); res.Deleted != 1 {
		t.Fatalf("after the grace period the uncommitted block should go: %+v", res)
	}
	missing, _ := st.Missing(ctx, []blockstore.ID{blockstore.Sum(block(1)), blockstore.Sum(block(3))})
	if len(missing) != 0 {
		t.Fatal("gc deleted a block a kept version uses")
	}
	if _, err := r.Remove(ctx, "xp", 7); !errors.Is(err, ErrNotFound) {
		t.Fatalf("removing an absent version: %v", err)
	}
}

func TestTokens(t *testing.T) {
	r, _, _ := newRepo(t)
	ctx := context.Background()
	if has, _ := r.HasTokens(ctx); has {
		t.Fatal("fresh repo has tokens")
	}
	tok, err := r.CreateToken(ctx, "alice", "user")
	if err != nil {
		t.Fatal(err)
	}
	p, err := r.Authenticate(ctx, tok)
	if err != nil || p.Name != "alice" || p.Role != "user" {
		t.Fatalf("authenticate: %v %+v", err, p)
	}
	if _, err := r.Authenticate(ctx, tok+"x"); !errors.Is(err, ErrBadToken) {
		t.Fatalf("wrong token: %v", err)
	}
	if _, err := r.CreateToken(ctx, "bob", "root"); !errors.Is(err, ErrInvalid) {
		t.Fatalf("bad role: %v", err)
	}
}
