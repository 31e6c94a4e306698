package repo

import (
	"errors"
	"sync"
	"sync/atomic"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Stats counts what the repository did since it opened.
type Stats struct {
	// Leases counts lease events: "granted" (a new epoch for a clone
	// nobody held), "taken_over" (forced from a live holder),
	// "renewed", "refused" (held by another), "released", "fenced" (a
	// release by a holder that had lost it).
	Leases map[string]int64
	// Commits counts commits by kind and outcome, as "KIND/OUTCOME":
	// KIND is "template" (a published version) or "generation" (a
	// clone's, also by revert); OUTCOME is "ok", "fenced" (a stale lease
	// epoch), "conflict" (a stale parent), "missing" (blocks not
	// uploaded), "quota" (over the owner's quota) or "error".
	Commits map[string]int64
}

// events counts named events.
type events struct{ m sync.Map } // string -> *atomic.Int64

func (e *events) add(name string) {
	v, ok := e.m.Load(name)
	if !ok {
		v, _ = e.m.LoadOrStore(name, new(atomic.Int64))
	}
	v.(*atomic.Int64).Add(1)
}

func (e *events) snapshot() map[string]int64 {
	out := make(map[string]int64)
	e.m.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Int64).Load()
		return true
	})
	return out
}

// Stats returns the counts so far.
func (r *Repo) Stats() Stats {
	return Stats{Leases: r.leaseEvents.snapshot(), Commits: r.commitEvents.snapshot()}
}

// countCommit counts a commit of kind by the outcome err says.
func (r *Repo) countCommit(kind string, err error) {
	var me *MissingError
	outcome := "error"
	switch {
	case err == nil:
		outcome = "ok"
	case errors.Is(err, ErrFenced):
		outcome = "fenced"
	case errors.Is(err, blockstore.ErrConflict):
		outcome = "conflict"
	case errors.As(err, &me):
		outcome = "missing"
	case errors.Is(err, ErrQuota):
		outcome = "quota"
	}
	r.commitEvents.add(kind + "/" + outcome)
}
