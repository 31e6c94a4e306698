package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// GC deletes every block that no kept manifest (template version or clone
// generation) names, except blocks
// uploaded within the grace period (they may belong to a publish that has
// not committed yet) and the bases, transitively, of the blocks it keeps
// that are stored as deltas. Deleting a delta-stored block deletes its
// records (dref/, dfrm/). Kept counts the blocks manifests name, Skipped
// the others kept. It holds the commit lock throughout, so no version
// can appear half-marked.
//
// With several servers over one store, one collects at a time and commits
// through the others wait (collecting.go); another's collection makes
// this one fail with ErrCollecting.
func (r *Repo) GC(ctx context.Context) (api.GCResult, error) {
	var res api.GCResult
	r.mu.Lock()
	defer r.mu.Unlock()
	if err := r.holdGC(ctx); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	defer r.releaseGC(context.WithoutCancel(ctx))

	live := make(map[blockstore.ID]struct{})
	// Every signed manifest is a root: template versions and every
	// generation of every clone. A manifest we cannot read fails the
	// collection: it would make us delete its blocks.
	if err := r.markManifests(ctx, prefixTemplates, keyTemplateMan, live); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	if err := r.markManifests(ctx, prefixClones, keyCloneGen, live); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}

	// Blocks stored as deltas, and the roots: what manifests name, and
	// what was uploaded within the grace. A delta keeps its base, and the
	// base's base, for as long as it lives.
	refs, err := r.deltaBases(ctx)
	if err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	keep := make(map[blockstore.ID]struct{}, len(live))
	var todo []blockstore.ID
	for id := range live {
		todo = append(todo, id)
	}
	cutoff := r.now().Add(-r.grace)
	r.recentMu.Lock()
	for id, p := range r.recent {
		if !p.at.After(cutoff) {
			r.unpendLocked(id)
		} else if _, ok := live[id]; !ok {
			todo = append(todo, id)
		}
	}
	// recentMu stays held through the walk: a block uploaded meanwhile
	// waits in uploaded, before the store holds it, and the walk cannot
	// see it.
	for len(todo) > 0 {
		id := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if _, ok := keep[id]; ok {
			continue
		}
		keep[id] = struct{}{}
		if base, ok := refs[id]; ok {
			todo = append(todo, base)
		}
	}
	count := func(id blockstore.ID) bool {
		if _, ok := keep[id]; !ok {
			return false
		}
		if _, ok := live[id]; ok {
			res.Kept++
		} else {
			res.Skipped++ // recent, or the base of a live delta
		}
		return true
	}

	var dead []blockstore.ID
	err = r.store.Walk(ctx, func(id blockstore.ID) error {
		if !count(id) {
			dead = append(dead, id)
		}
		return nil
	})
	r.recentMu.Unlock()
	if err != nil {
		return res, err
	}
	var deadDeltas []blockstore.MetaOp
	for id := range refs {
		if !count(id) {
			deadDeltas = append(deadDeltas, blockstore.MetaOp{Key: deltaRefKey(id)}, blockstore.MetaOp{Key: deltaFrameKey(id)})
		}
	}
	// Who reads what is built again from what remains.
	defer r.reset()
	// The record must outlast the deletions: renewed, it holds gcHold.
	if err := r.holdGC(ctx); err != nil {
		return res, fmt.Errorf("gc: %w", err)
	}
	for len(deadDeltas) > 0 {
		n := min(len(deadDeltas), 2*deltaChunk)
		if err := r.store.CommitMeta(ctx, deadDeltas[:n]...); err != nil {
			return res, fmt.Errorf("gc: deleting deltas: %w", err)
		}
		res.Deleted += n / 2
		deadDeltas = deadDeltas[n:]
	}
	for len(dead) > 0 {
		n := min(len(dead), 4096)
		if err := r.store.Delete(ctx, dead[:n]...); err != nil {
			return res, err
		}
		res.Deleted += n
		dead = dead[n:]
	}
	r.log.Info("garbage collected blocks", "kept", res.Kept, "deleted", res.Deleted, "skipped_recent", res.Skipped)
	return res, nil
}

// GCLoop collects garbage every interval until ctx ends: uploads that no
// commit named within GCGrace, and what removals freed, go without an
// admin asking. A failed collection is logged and tried again at the next
// tick. An interval <= 0 runs none.
func (r *Repo) GCLoop(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		if _, err := r.GC(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("automatic garbage collection failed", "err", err)
		}
		if _, err := r.PruneTokens(ctx); err != nil && ctx.Err() == nil {
			r.log.Error("pruning old token records failed", "err", err)
		}
	}
}

// DefaultGCEvery is how often a server collects garbage by itself.
const DefaultGCEvery = 10 * time.Minute
