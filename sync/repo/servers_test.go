package repo

import (
	"context"
	"crypto/ed25519"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// meddler is the metadata of a repository that a second server shares: it
// runs meddle (what the other server does) just before the first commit
// that match takes, between that commit's reads and its transaction.
type meddler struct {
	*memstore.Store
	match  func(ops []blockstore.MetaOp) bool
	meddle func()
}

func (m *meddler) CommitMeta(ctx context.Context, ops ...blockstore.MetaOp) error {
	if m.meddle != nil && m.match(ops) {
		f := m.meddle
		m.meddle = nil
		f()
	}
	return m.Store.CommitMeta(ctx, ops...)
}

// twoServers returns two repositories with one key over st1 and st2 (one
// store, or one with a meddler in front), and a template xp and alice's
// clone lab1 of it, made through the first.
func twoServers(t *testing.T, st1, st2 Store, clock func() time.Time) (*Repo, *Repo) {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	var rs []*Repo
	for _, st := range []Store{st1, st2} {
		r, err := New(Config{Store: st, Key: key, Now: clock, GCGrace: time.Minute})
		if err != nil {
			t.Fatal(err)
		}
		rs = append(rs, r)
	}
	ctx := context.Background()
	if _, err := rs[0].Commit(ctx, put(t, rs[0], "xp", block(1), block(2))); err != nil {
		t.Fatal(err)
	}
	if _, err := rs[0].CreateClone(ctx, "alice", put(t, rs[0], "lab1", block(1), block(2)), "xp", 0); err != nil {
		t.Fatal(err)
	}
	return rs[0], rs[1]
}

// touches matches a commit that writes key.
func touches(key string) func([]blockstore.MetaOp) bool {
	return func(ops []blockstore.MetaOp) bool {
		return slices.ContainsFunc(ops, func(op blockstore.MetaOp) bool { return op.Key == key })
	}
}

// Two servers over one metadata store (what several dvfs servers on one
// etcd are): a lease taken over through one between another's epoch check
// and its commit fences that commit; a renewal meanwhile does not; two
// holders asking through two servers at once get one lease.
func TestLeasesAcrossServers(t *testing.T) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	st := memstore.New()
	md := &meddler{Store: st}
	r1, r2 := twoServers(t, md, st, func() time.Time { return now })
	ctx := context.Background()
	a, err := r1.AcquireLease(ctx, "alice", "lab1", "ws-a", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}

	// ws-b takes the clone over through server 2 while ws-a's commit is
	// between its epoch check and its transaction on server 1.
	var b api.Lease
	md.match, md.meddle = touches(cloneInfoKey("alice", "lab1")), func() {
		if b, err = r2.AcquireLease(ctx, "alice", "lab1", "ws-b", time.Minute, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := r1.CommitGeneration(ctx, "alice", gen(t, r1, 1, 3), 1, a.Epoch); !errors.Is(err, ErrFenced) {
		t.Fatalf("a commit under a lease taken over meanwhile: %v, want ErrFenced", err)
	}
	if b.Epoch != a.Epoch+1 {
		t.Fatalf("the takeover did not happen in the window (epoch %d)", b.Epoch)
	}
	if info, err := r2.Clone(ctx, "alice", "lab1"); err != nil || info.Generation != 1 {
		t.Fatalf("after the fenced commit: generation %d, %v", info.Generation, err)
	}

	// ws-b's own renewal through server 2 in the same window: the commit
	// reads the lease again and goes through.
	md.match, md.meddle = touches(cloneInfoKey("alice", "lab1")), func() {
		now = now.Add(10 * time.Second)
		if _, err := r2.AcquireLease(ctx, "alice", "lab1", "ws-b", time.Minute, false); err != nil {
			t.Fatal(err)
		}
	}
	if info, err := r1.CommitGeneration(ctx, "alice", gen(t, r1, 1, 4), 1, b.Epoch); err != nil || info.Generation != 2 {
		t.Fatalf("a commit across the holder's renewal: %+v, %v", info, err)
	}

	// The lease free, ws-c asks through server 2 while ws-d's request is
	// on its way through server 1: one gets it.
	if err := r2.ReleaseLease(ctx, "alice", "lab1", "ws-b", b.Epoch); err != nil {
		t.Fatal(err)
	}
	var c api.Lease
	md.match, md.meddle = touches(leaseKey("alice", "lab1")), func() {
		if c, err = r2.AcquireLease(ctx, "alice", "lab1", "ws-c", time.Minute, false); err != nil {
			t.Fatal(err)
		}
	}
	var le *LeaseError
	if _, err := r1.AcquireLease(ctx, "alice", "lab1", "ws-d", time.Minute, false); !errors.As(err, &le) || le.Lease.Holder != "ws-c" {
		t.Fatalf("ws-d asking while ws-c got the lease: %v", err)
	}
	if c.Epoch != b.Epoch+1 {
		t.Fatalf("ws-c's lease: %+v", c)
	}
}

// Two servers over one metadata store: a block committed through one is
// readable through the other, whose sets were built before the commit,
// once it asks again (UnreadableNow): a clone's generation, a template
// version, a clone shared with a group.
func TestAccessAcrossServers(t *testing.T) {
	st := memstore.New()
	r1, r2 := twoServers(t, st, st, time.Now)
	ctx := context.Background()
	id := func(b byte) blockstore.ID { return blockstore.Sum(block(b)) }
	refused := func(r *Repo, now bool, owner string, groups []string, b byte) bool {
		t.Helper()
		ask := r.UnreadableBy
		if now {
			ask = r.UnreadableNow
		}
		out, err := ask(ctx, owner, groups, []blockstore.ID{id(b)})
		if err != nil {
			t.Fatal(err)
		}
		return len(out) > 0
	}
	// Server 2 builds its sets: alice's clone and the group's (empty).
	if refused(r2, false, "alice", nil, 1) || !refused(r2, false, "bob", []string{"lab"}, 3) {
		t.Fatal("server 2's first sets are wrong")
	}
	l, err := r1.AcquireLease(ctx, "alice", "lab1", "ws", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r1.CommitGeneration(ctx, "alice", gen(t, r1, 1, 3), 1, l.Epoch); err != nil {
		t.Fatal(err)
	}
	if !refused(r2, false, "alice", nil, 3) {
		t.Fatal("server 2's sets saw a commit through server 1 without asking again")
	}
	if refused(r2, true, "alice", nil, 3) {
		t.Fatal("alice cannot read her new generation through server 2")
	}
	if _, err := r1.Commit(ctx, put(t, r1, "xp", block(1), block(4))); err != nil {
		t.Fatal(err)
	}
	if refused(r2, true, "bob", nil, 4) {
		t.Fatal("bob cannot read a new template version through server 2")
	}
	if _, err := r1.Share(ctx, "alice", "lab1", "lab", true); err != nil {
		t.Fatal(err)
	}
	if refused(r2, true, "bob", []string{"lab"}, 3) {
		t.Fatal("a member of lab cannot read the clone shared with lab through server 2")
	}
	// What nobody committed stays refused.
	if !refused(r2, true, "bob", []string{"lab"}, 5) || !refused(r2, true, "carol", nil, 3) {
		t.Fatal("server 2 lets read what nobody may")
	}
}

// Two servers over one store: while one collects garbage, a commit
// through the other that names a block the collection is about to delete
// waits (ErrCollecting) instead of committing a manifest whose block then
// goes; so does the other's own collection. After it, the block uploaded
// again, the commit goes through, and every block a manifest names is
// stored.
func TestGCAcrossServers(t *testing.T) {
	now := time.Date(2026, 11, 22, 8, 0, 0, 0, time.UTC)
	st := memstore.New()
	md := &meddler{Store: st}
	r1, r2 := twoServers(t, md, st, func() time.Time { return now })
	ctx := context.Background()
	l, err := r2.AcquireLease(ctx, "alice", "lab1", "ws", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	next := gen(t, r2, 1, 9) // block 9: stored, named by nothing yet
	now = now.Add(time.Hour) // past its grace
	holds := 0
	md.match = func(ops []blockstore.MetaOp) bool {
		if touches(gcKey)(ops) {
			holds++
		}
		return holds == 2 // the collection renews its record before it deletes
	}
	var commitErr, gcErr error
	md.meddle = func() {
		_, commitErr = r2.CommitGeneration(ctx, "alice", next, 1, l.Epoch)
		_, gcErr = r2.GC(ctx)
	}
	if _, err := r1.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if !errors.Is(commitErr, ErrCollecting) || !errors.Is(gcErr, ErrCollecting) {
		t.Fatalf("during server 1's collection, server 2's commit: %v; its collection: %v", commitErr, gcErr)
	}
	// After it: the block went (nothing named it), the commit asks for it,
	// and with it uploaded again commits.
	var missing *MissingError
	if _, err := r2.CommitGeneration(ctx, "alice", next, 1, l.Epoch); !errors.As(err, &missing) {
		t.Fatalf("the commit after the collection: %v, want the collected block missing", err)
	}
	next = gen(t, r2, 1, 9)
	if _, err := r2.CommitGeneration(ctx, "alice", next, 1, l.Epoch); err != nil {
		t.Fatal(err)
	}
	for _, r := range []*Repo{r1, r2} {
		if _, err := r.GC(ctx); err != nil {
			t.Fatal(err)
		}
	}
	live := map[blockstore.ID]struct{}{}
	if err := r1.markManifests(ctx, prefixClones, keyCloneGen, live); err != nil {
		t.Fatal(err)
	}
	for id := range live {
		if missing, err := st.Missing(ctx, []blockstore.ID{id}); err != nil || len(missing) > 0 {
			t.Fatalf("a manifest names block %s, which is not stored (%v)", id.Short(), err)
		}
	}
}
