package badgerstore

import (
	"context"
	"fmt"
	"os"

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
// first, durable, then the index entries that point at them, committed
// (synced unless Volatile) before it returns. Concurrent calls share
// their syncs (groupCommit).
func (s *Store) storeBlocks(ctx context.Context, blocks []blockstore.Block) error {
	st, err := s.stageBlocks(blocks)
	if err != nil || st == nil {
		return err
	}
	defer s.packs.done(st.num)
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	if err := s.group.commit([]*indexWrite{&st.indexWrite}, s.commitRound); err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	return nil
}

// staged is blocks whose payloads are written, not yet synced, and their
// index entries, not yet committed; the pack slot stays reserved (so the
// pack is not removed) until packs.done(num).
type staged struct {
	indexWrite
	num    uint32
	blocks int
}

func (st *staged) Blocks() int { return st.blocks }

// stageBlocks writes the payloads of blocks and returns their index
// entries; nil for no blocks.
func (s *Store) stageBlocks(blocks []blockstore.Block) (*staged, error) {
	if len(blocks) == 0 {
		return nil, nil
	}
	refs, sl, err := s.writePayloads(blocks)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: put: %w", err)
	}
	// The batch keeps the key and value slices until Flush: one array
	// for each.
	st := &staged{indexWrite: indexWrite{pack: sl.f, keys: make([][]byte, len(blocks)), vals: make([][]byte, len(blocks))}, num: sl.num, blocks: len(blocks)}
	keys := make([]byte, len(blocks)*blockKeyLen)
	vals := make([]byte, 0, len(blocks)*refMaxLen)
	for i, b := range blocks {
		k := keys[i*blockKeyLen : (i+1)*blockKeyLen]
		k[0] = blockPrefix
		copy(k[1:], b.ID[:])
		at := len(vals)
		vals = appendRef(vals, &refs[i])
		st.keys[i], st.vals[i] = k, vals[at:len(vals):len(vals)]
	}
	// The sector chaining values go in the same batch as the entries.
	for i, b := range blocks {
		if len(refs[i].cvs) > 0 {
			ck := cvKey(b.ID)
			st.keys = append(st.keys, ck[:])
			st.vals = append(st.vals, refs[i].cvs)
		}
	}
	return st, nil
}

// Stage implements blockstore.Stager: Put's lookup and payload writes,
// without the syncs and the index commit.
func (s *Store) Stage(ctx context.Context, blocks ...blockstore.Block) (blockstore.Staged, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("badgerstore: stage: %w", err)
	}
	defer s.exit()
	todo, err := s.absentBlocks(ctx, blocks)
	if err != nil {
		return nil, fmt.Errorf("badgerstore: stage: %w", err)
	}
	st, err := s.stageBlocks(todo)
	if err != nil {
		return nil, err
	}
	if st == nil {
		return &staged{}, nil // nothing was absent
	}
	return st, nil
}

// CommitStaged implements blockstore.Stager: one round of group commit
// (syncs of the packs written, one synced index batch) for all of them.
func (s *Store) CommitStaged(ctx context.Context, sts []blockstore.Staged) error {
	var ws []*indexWrite
	for _, x := range sts {
		st, ok := x.(*staged)
		if !ok {
			return fmt.Errorf("badgerstore: commit staged: %T is not from this store", x)
		}
		if st.pack != nil {
			defer s.packs.done(st.num)
			ws = append(ws, &st.indexWrite)
		}
	}
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: commit staged: %w", err)
	}
	defer s.exit()
	if len(ws) == 0 {
		return nil
	}
	if err := s.group.commit(ws, s.commitRound); err != nil {
		return fmt.Errorf("badgerstore: commit staged: %w", err)
	}
	return nil
}

// commitRound makes the writes of one group commit durable: it syncs
// each pack they wrote, then commits all their index entries in one
// WriteBatch, whose commits are synced (SyncWrites) before Flush returns.
func (s *Store) commitRound(ws []*indexWrite) error {
	synced := make(map[*os.File]bool, 2)
	for _, w := range ws {
		if !synced[w.pack] {
			synced[w.pack] = true
			if err := s.packs.sync(w.pack); err != nil {
				return err
			}
		}
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, w := range ws {
		for i, k := range w.keys {
			if err := wb.Set(k, w.vals[i]); err != nil {
				return err
			}
		}
	}
	return wb.Flush()
}
