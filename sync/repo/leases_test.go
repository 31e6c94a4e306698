package repo

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

func newClone(t *testing.T) (*Repo, *time.Time) {
	t.Helper()
	r, _, now := newRepo(t)
	ctx := context.Background()
	if _, err := r.Commit(ctx, put(t, r, "xp", block(1), block(2))); err != nil {
		t.Fatal(err)
	}
	m := put(t, r, "lab1", block(1), block(2))
	if _, err := r.CreateClone(ctx, "alice", m, "xp", 0); err != nil {
		t.Fatal(err)
	}
	return r, now
}

func gen(t *testing.T, r *Repo, blocks ...byte) *manifest.Manifest {
	t.Helper()
	var plains [][]byte
	for _, b := range blocks {
		plains = append(plains, block(b))
	}
	return put(t, r, "lab1", plains...)
}

func TestLeaseFencing(t *testing.T) {
	r, now := newClone(t)
	ctx := context.Background()
	a, err := r.AcquireLease(ctx, "alice", "lab1", "ws-a", time.Minute, false)
	if err != nil || a.Epoch != 1 {
		t.Fatalf("A: %v %+v", err, a)
	}
	var le *LeaseError
	if _, err := r.AcquireLease(ctx, "alice", "lab1", "ws-b", time.Minute, false); !errors.As(err, &le) || le.Lease.Holder != "ws-a" {
		t.Fatalf("B while A holds: %v", err)
	}
	if again, err := r.AcquireLease(ctx, "alice", "lab1", "ws-a", time.Minute, false); err != nil || again.Epoch != 1 {
		t.Fatalf("A renews: %v %+v", err, again)
	}
	if _, err := r.CommitGeneration(ctx, "alice", gen(t, r, 1, 3), 1, a.Epoch); err != nil {
		t.Fatalf("A commits generation 2: %v", err)
	}
	b, err := r.AcquireLease(ctx, "alice", "lab1", "ws-b", time.Minute, true)
	if err != nil || b.Epoch != 2 {
		t.Fatalf("B forces: %v %+v", err, b)
	}
	// A's late commit is fenced off, even on the right parent.
	if _, err := r.CommitGeneration(ctx, "alice", gen(t, r, 1, 4), 2, a.Epoch); !errors.Is(err, ErrFenced) {
		t.Fatalf("A's late commit: %v", err)
	}
	if _, err := r.CommitGeneration(ctx, "alice", gen(t, r, 1, 5), 1, b.Epoch); !errors.Is(err, blockstore.ErrConflict) {
		t.Fatalf("commit on a stale parent: %v", err)
	}
	info, err := r.CommitGeneration(ctx, "alice", gen(t, r, 1, 5), 2, b.Epoch)
	if err != nil || info.Generation != 3 {
		t.Fatalf("B commits generation 3: %v %+v", err, info)
	}
	if err := r.ReleaseLease(ctx, "alice", "lab1", "ws-a", a.Epoch); !errors.Is(err, ErrFenced) {
		t.Fatalf("A releases a lease it lost: %v", err)
	}
	if err := r.ReleaseLease(ctx, "alice", "lab1", "ws-b", b.Epoch); err != nil {
		t.Fatal(err)
	}
	// A lease that expired may be taken without force; the epoch grows.
	c, _ := r.AcquireLease(ctx, "alice", "lab1", "ws-c", time.Minute, false)
	*now = now.Add(2 * time.Minute)
	d, err := r.AcquireLease(ctx, "alice", "lab1", "ws-d", time.Minute, false)
	if err != nil || d.Epoch != c.Epoch+1 {
		t.Fatalf("taking an expired lease: %v %+v (was %+v)", err, d, c)
	}
}

func TestSnapshotRevertHistory(t *testing.T) {
	r, _ := newClone(t)
	ctx := context.Background()
	l, _ := r.AcquireLease(ctx, "alice", "lab1", "ws-a", time.Minute, false)
	if _, err := r.Snapshot(ctx, "alice", "lab1", "fresh"); err != nil {
		t.Fatal(err)
	}
	if _, err := r.CommitGeneration(ctx, "alice", gen(t, r, 7, 8), 1, l.Epoch); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Snapshot(ctx, "alice", "lab1", "fresh"); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate snapshot name: %v", err)
	}
	info, err := r.Revert(ctx, "alice", "lab1", "fresh", "ws-a")
	if err != nil || info.Generation != 3 {
		t.Fatalf("revert: %v %+v", err, info)
	}
	signed, _ := r.GenerationSigned(ctx, "alice", "lab1", 3)
	m, _, err := manifest.Open(signed, r.PublicKey())
	if err != nil || m.Files[0].Blocks[0] != blockstore.Sum(block(1)) {
		t.Fatalf("reverted tree: %v", err)
	}
	h, err := r.History(ctx, "alice", "lab1")
	if err != nil || len(h.Generations) != 3 || len(h.Snapshots) != 1 || h.Lease == nil || h.Lease.Holder != "ws-a" {
		t.Fatalf("history: %v %+v", err, h)
	}
	// Another holder may not revert under a live lease.
	if _, err := r.Revert(ctx, "alice", "lab1", "fresh", "ws-b"); !errors.Is(err, ErrLeased) {
		t.Fatalf("revert under another's lease: %v", err)
	}
}
