package repo

import (
	"context"
	"fmt"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore"
)

// CheckResult is what CheckBlocks found.
type CheckResult struct {
	// Named counts the distinct blocks the kept manifests name (holes
	// aside), Deltas the blocks among them, or their bases, stored as
	// deltas.
	Named, Deltas int
	// Missing lists the blocks a kept manifest names, or that a kept
	// delta is built on, that the repository lacks.
	Missing []blockstore.ID
}

// CheckBlocks reads every kept manifest (template versions and every
// clone generation), as GC marks them, and checks that the repository
// holds each block they name: in the block store, or stored as a delta
// whose bases, down to a block stored whole, it holds too. It walks the
// whole block store once. A manifest
// that does not open with the repository's key fails the check.
func (r *Repo) CheckBlocks(ctx context.Context) (CheckResult, error) {
	var res CheckResult
	named := make(map[blockstore.ID]struct{})
	if err := r.markManifests(ctx, prefixTemplates, keyTemplateMan, named); err != nil {
		return res, fmt.Errorf("check: %w", err)
	}
	if err := r.markManifests(ctx, prefixClones, keyCloneGen, named); err != nil {
		return res, fmt.Errorf("check: %w", err)
	}
	delete(named, blockstore.Hole)
	res.Named = len(named)
	refs, err := r.deltaBases(ctx)
	if err != nil {
		return res, fmt.Errorf("check: %w", err)
	}
	// Blocks to find whole in the store: those named and not stored as
	// deltas, and the bases of the delta chains.
	whole := make(map[blockstore.ID]struct{}, len(named))
	seen := make(map[blockstore.ID]struct{})
	for id := range named {
		for {
			base, ok := refs[id]
			if !ok {
				whole[id] = struct{}{}
				break
			}
			if _, done := seen[id]; done {
				break
			}
			seen[id] = struct{}{}
			id = base
		}
	}
	res.Deltas = len(seen)
	// One walk of the store, as GC walks it: asking for each block was a
	// round trip each to a store whose index is in etcd.
	err = r.store.Walk(ctx, func(id blockstore.ID) error {
		delete(whole, id)
		return nil
	})
	if err != nil {
		return res, fmt.Errorf("check: %w", err)
	}
	for id := range whole {
		res.Missing = append(res.Missing, id)
	}
	return res, nil
}

// deltaBases reads the dref/ records: each delta-stored block's base.
// A record that does not parse is an error: a caller deleting by it
// could lose live blocks.
func (r *Repo) deltaBases(ctx context.Context) (map[blockstore.ID]blockstore.ID, error) {
	refs := make(map[blockstore.ID]blockstore.ID)
	err := r.store.ListMeta(ctx, prefixDeltaRef, func(key string, value []byte) error {
		id, err := blockstore.ParseID(strings.TrimPrefix(key, prefixDeltaRef))
		if err != nil {
			return fmt.Errorf("delta record %s: %w", key, err)
		}
		ref, err := parseDeltaRef(value)
		if err != nil {
			return fmt.Errorf("delta record %s: %w", key, err)
		}
		refs[id] = ref.base
		return nil
	})
	return refs, err
}
