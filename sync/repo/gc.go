package repo

import (
	"context"
	"fmt"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// GC deletes every block that no kept manifest (template version or clone
// generation) names, except blocks
// uploaded within the grace period (they may belong to a publish that has
// not committed yet). It holds the commit lock throughout, so no version
// can appear half-marked.
func (r *Repo) GC(ctx context.Context) (api.GCResult, error) {
	var res api.GCResult
	r.mu.Lock()
	defer r.mu.Unlock()

	live := make(map[blockstore.ID]struct{})
	pub := r.PublicKey()
	// Every signed manifest is a root: template versions and every
	// generation of every clone.
	mark := func(key string, value []byte) error {
		if !strings.Contains(key, "/v/") && !strings.Contains(key, "/g/") {
			return nil
		}
		m, _, err := manifest.Open(value, pub)
		if err != nil {
			// A manifest we cannot read would make us delete its blocks.
			return fmt.Errorf("gc: manifest %s: %w", key, err)
		}
		for id := range m.BlockIDs() {
			live[id] = struct{}{}
		}
		return nil
	}
	for _, prefix := range []string{prefixTemplates, prefixClones} {
		if err := r.store.ListMeta(ctx, prefix, mark); err != nil {
			return res, err
		}
	}

	var dead []blockstore.ID
	cutoff := r.now().Add(-r.grace)
	r.recentMu.Lock()
	err := r.store.Walk(ctx, func(id blockstore.ID) error {
		if _, ok := live[id]; ok {
			res.Kept++
			return nil
		}
		if t, ok := r.recent[id]; ok && t.After(cutoff) {
			res.Skipped++
			return nil
		}
		dead = append(dead, id)
		return nil
	})
	for id, t := range r.recent {
		if !t.After(cutoff) {
			delete(r.recent, id)
		}
	}
	r.recentMu.Unlock()
	if err != nil {
		return res, err
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
