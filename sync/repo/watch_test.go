package repo

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta/etcdtest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// TestWatchCatalog runs two servers over one etcd cluster, the second
// watching: it is told once of each template version committed after
// its watch began (through either server), not of the one there before;
// the new version's blocks are in its template set without a read to
// build it again, and a commit through the first to alice's clone drops
// the second's set of alice's, so its plain check (UnreadableBy, which
// asks nothing of the store's revisions) lets her read her new
// generation. Its own commit to alice's clones keeps her set.
func TestWatchCatalog(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{MaxTxnOps: 8192})
	ctx := t.Context()
	meta, err := etcdmeta.Open(ctx, etcdmeta.Config{Endpoints: c.Endpoints(), Prefix: "repo/", MaxTxnOps: 8192})
	if err != nil {
		t.Fatal(err)
	}
	defer meta.Close()
	st := storetest.SplitStore{Store: memstore.New(), Meta: meta}
	r1, r2 := twoServers(t, st, st, time.Now) // xp@1, alice's lab1
	id := func(b byte) blockstore.ID { return blockstore.Sum(block(b)) }
	readable := func(owner string, b byte) bool {
		t.Helper()
		out, err := r2.UnreadableBy(ctx, owner, nil, []blockstore.ID{id(b)})
		if err != nil {
			t.Fatal(err)
		}
		return len(out) == 0
	}
	if !readable("alice", 1) || readable("alice", 3) || readable("bob", 4) {
		t.Fatal("server 2's first sets are wrong")
	}

	told := make(chan string, 10)
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() {
		done <- r2.WatchCatalog(wctx, func(name string, v uint64) { told <- fmt.Sprintf("%s@%d", name, v) })
	}()
	c.WaitWatchers(2)
	next := func() string {
		t.Helper()
		select {
		case s := <-told:
			return s
		case <-time.After(60 * time.Second):
			t.Fatal("no version told for 60 s")
			return ""
		}
	}

	if _, err := r1.Commit(ctx, put(t, r1, "xp", block(1), block(4))); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "xp@2" {
		t.Fatalf("told %s, want xp@2", got)
	}
	if !readable("bob", 4) {
		t.Fatal("the watch did not add xp@2's blocks to server 2's template set")
	}
	if _, err := r2.Commit(ctx, put(t, r2, "win", block(5))); err != nil {
		t.Fatal(err)
	}
	if got := next(); got != "win@1" {
		t.Fatalf("told %s, want win@1", got)
	}

	l, err := r1.AcquireLease(ctx, "alice", "lab1", "ws", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r1.CommitGeneration(ctx, "alice", gen(t, r1, 1, 3), 1, l.Epoch); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for !readable("alice", 3) {
		if time.Now().After(deadline) {
			t.Fatal("server 2 still refuses alice her generation committed through server 1")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if readable("bob", 3) {
		t.Fatal("bob reads alice's generation")
	}

	// Server 2's own commit to alice's clones grew her set: its watch
	// keeps it. A commit through server 1 to bob's, told after it, drops
	// bob's.
	ownerSet := func(owner string) *ownerSet {
		r2.access.mu.Lock()
		defer r2.access.mu.Unlock()
		return r2.access.owners[owner]
	}
	readable("bob", 1) // builds bob's set
	aliceSet := ownerSet("alice")
	if _, err := r2.CreateClone(ctx, "alice", put(t, r2, "lab2", block(1)), "xp", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := r1.CreateClone(ctx, "bob", put(t, r1, "lab1", block(1)), "xp", 0); err != nil {
		t.Fatal(err)
	}
	deadline = time.Now().Add(60 * time.Second)
	for ownerSet("bob") != nil {
		if time.Now().After(deadline) {
			t.Fatal("server 2 keeps bob's set after a commit to it through server 1")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ownerSet("alice") != aliceSet {
		t.Fatal("server 2's watch dropped alice's set after its own commit to it")
	}
	select {
	case s := <-told:
		t.Fatalf("told %s, which nobody committed", s)
	default:
	}
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("WatchCatalog after its context ended: %v", err)
	}
}
