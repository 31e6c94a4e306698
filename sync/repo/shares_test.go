package repo

import (
	"context"
	"crypto/ed25519"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
)

// A group's members read exactly the blocks of the latest generations of
// the clones shared with it, from the share until the unshare or the
// clone's removal.
func TestShareReadsLatestGeneration(t *testing.T) {
	r, _ := newClone(t)
	ctx := context.Background()
	l, err := r.AcquireLease(ctx, "alice", "lab1", "ws1", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.CommitGeneration(ctx, "alice", gen(t, r, 1, 9), 1, l.Epoch); err != nil {
		t.Fatal(err)
	}
	b9, b10 := blockstore.Sum(block(9)), blockstore.Sum(block(10))
	readable := func(groups []string, id blockstore.ID) bool {
		t.Helper()
		no, err := r.UnreadableBy(ctx, "bob", groups, []blockstore.ID{id})
		if err != nil {
			t.Fatal(err)
		}
		return len(no) == 0
	}
	if readable([]string{"cs101"}, b9) {
		t.Fatal("bob reads alice's block before any share")
	}
	info, err := r.Share(ctx, "alice", "lab1", "cs101", true)
	if err != nil || len(info.Shared) != 1 {
		t.Fatalf("share: %+v, %v", info, err)
	}
	if !readable([]string{"staff", "cs101"}, b9) || readable([]string{"staff"}, b9) || readable(nil, b9) {
		t.Fatal("after the share, only cs101's members read the clone's block")
	}
	// The next generation replaces block 9 with 10: members read 10, and
	// no longer 9.
	if _, err := r.CommitGeneration(ctx, "alice", gen(t, r, 1, 10), 2, l.Epoch); err != nil {
		t.Fatal(err)
	}
	if !readable([]string{"cs101"}, b10) || readable([]string{"cs101"}, b9) {
		t.Fatal("members read other than the latest generation")
	}
	if _, err := r.Share(ctx, "alice", "lab1", "cs101", false); err != nil {
		t.Fatal(err)
	}
	if readable([]string{"cs101"}, b10) {
		t.Fatal("a member reads the clone after the unshare")
	}
	if l, _ := r.SharedWith(ctx, []string{"cs101"}); len(l) != 0 {
		t.Fatalf("shared after the unshare: %+v", l)
	}
	// Removal ends the share and its index key.
	if _, err := r.Share(ctx, "alice", "lab1", "cs101", true); err != nil {
		t.Fatal(err)
	}
	if err := r.RemoveClone(ctx, "alice", "lab1"); err != nil {
		t.Fatal(err)
	}
	if readable([]string{"cs101"}, b10) {
		t.Fatal("a member reads a removed clone")
	}
	n := 0
	r.store.ListMeta(ctx, prefixShares, func(string, []byte) error { n++; return nil })
	if n != 0 {
		t.Fatalf("%d share index keys left after the removal", n)
	}
	if _, err := r.Share(ctx, "alice", "lab1", "cs101", true); err == nil {
		t.Fatal("shared a removed clone")
	}
	if _, err := r.Share(ctx, "alice", "lab1", "../x", true); err == nil {
		t.Fatal("a group named ../x")
	}
}

// A user's quota outlives the server's restart; dropping it brings back the
// default.
func TestQuotaPersists(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	st := memstore.New()
	open := func() *Repo {
		r, err := New(Config{Store: st, Key: key, CloneQuota: 1 << 30})
		if err != nil {
			t.Fatal(err)
		}
		return r
	}
	ctx := context.Background()
	if err := open().SetQuota(ctx, "bob", 8<<20, false); err != nil {
		t.Fatal(err)
	}
	r := open()
	if q, err := r.Quota(ctx, "bob"); err != nil || q.Quota != 8<<20 || q.Default {
		t.Fatalf("bob's quota after a restart: %+v, %v", q, err)
	}
	if q, _ := r.Quota(ctx, "carol"); q.Quota != 1<<30 || !q.Default {
		t.Fatalf("carol's quota: %+v", q)
	}
	if err := r.SetQuota(ctx, "bob", 0, true); err != nil {
		t.Fatal(err)
	}
	if q, _ := open().Quota(ctx, "bob"); q.Quota != 1<<30 || !q.Default {
		t.Fatalf("bob's quota back to the default: %+v", q)
	}
	if err := r.SetQuota(ctx, "bob", -1, false); err == nil {
		t.Fatal("a negative quota")
	}
	if err := r.SetQuota(ctx, "../bob", 1, false); err == nil {
		t.Fatal("a quota for ../bob")
	}
}
