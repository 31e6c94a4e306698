package badgerstore

import (
	"context"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
)

// PutAbsent is Put for blocks the caller knows the store lacks (it asked
// Missing, and is the only one filling them in, as a multicast receiver
// filling a workstation's cache): it skips Put's lookup of every block,
// which costs more than the index write itself once the index is large.
// Every other promise of Put holds: payloads are written (and synced,
// unless Volatile) before the index entries that point at them, and the
// frames must be verified against their IDs. A block that was present
// after all (another writer stored it since) is stored again and its
// entry points at the new copy; the old copy's space is lost until its
// pack is removed.
func (s *Store) PutAbsent(ctx context.Context, blocks ...blockstore.Block) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	defer s.exit()
	todo := make([]blockstore.Block, 0, len(blocks))
	for _, b := range blocks {
		if !b.ID.IsHole() {
			todo = append(todo, b)
		}
	}
	return s.storeBlocks(ctx, todo)
}

// storeBlocks stores blocks whether or not they are present: payloads
// first, durable, then the index entries that point at them, in one
// WriteBatch whose commits are synced (unless Volatile) before it returns.
func (s *Store) storeBlocks(ctx context.Context, blocks []blockstore.Block) error {
	if len(blocks) == 0 {
		return nil
	}
	refs, err := s.storePayloads(blocks)
	if err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	// The batch keeps the key and value slices until Flush: one array
	// for each.
	keys := make([]byte, len(blocks)*blockKeyLen)
	vals := make([]byte, 0, len(blocks)*refMaxLen)
	for i, b := range blocks {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("badgerstore: put: %w", err)
		}
		k := keys[i*blockKeyLen : (i+1)*blockKeyLen]
		k[0] = blockPrefix
		copy(k[1:], b.ID[:])
		at := len(vals)
		vals = appendRef(vals, &refs[i])
		if err := wb.Set(k, vals[at:len(vals):len(vals)]); err != nil {
			return fmt.Errorf("badgerstore: put %s: %w", b.ID.Short(), err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	return nil
}
