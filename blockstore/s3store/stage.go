package s3store

import (
	"context"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
)

var _ blockstore.Stager = (*Store)(nil)

// openPack is the pack that Stage fills in memory. Once full, or when a
// CommitStaged needs one of its blocks, it is sealed: written as a pending
// pack, its body dropped. Its fields change under Store.stageMu only.
type openPack struct {
	id     packID
	body   []byte
	blocks int // in body
	sealed bool
	rec    packRecord // once sealed without error
	err    error      // the seal's failure
}

type stagedItem struct {
	pack *openPack
	idx  indexItem
}

// staged is what Stage returns: its blocks, each in an open pack.
type staged struct{ items []stagedItem }

func (st *staged) Blocks() int { return len(st.items) }

// Stage implements blockstore.Stager: the blocks the store lacks are
// copied into the open pack, which is written whenever it is full. A
// server taking many small uploads thus writes full packs, one PUT each,
// and indexes them at CommitStaged.
func (s *Store) Stage(ctx context.Context, blocks ...blockstore.Block) (blockstore.Staged, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("s3store: stage: %w", err)
	}
	defer s.exit()
	todo, err := s.absent(ctx, blocks)
	if err != nil {
		return nil, fmt.Errorf("s3store: stage: %w", err)
	}
	s.stageMu.Lock()
	defer s.stageMu.Unlock()
	st := &staged{}
	for _, b := range todo {
		if s.open != nil && s.packFull(s.open.blocks, int64(len(s.open.body)), int64(len(b.Frame))) {
			if err := s.seal(ctx); err != nil {
				s.release(st.items)
				return nil, fmt.Errorf("s3store: stage: %w", err)
			}
		}
		if s.open == nil {
			s.open = &openPack{id: newPackID()}
		}
		op := s.open
		s.setInflight(op.id, 1)
		st.items = append(st.items, stagedItem{pack: op, idx: indexItem{id: b.ID, entry: frameEntry(op.id, int64(len(op.body)), b.Frame)}})
		op.body = append(op.body, b.Frame...)
		op.blocks++
	}
	return st, nil
}

// seal writes the open pack; s.stageMu is held.
func (s *Store) seal(ctx context.Context) error {
	op := s.open
	s.open = nil
	op.rec, op.err = s.uploadPack(ctx, op.id, op.body)
	op.sealed, op.body = true, nil
	return op.err
}

// release drops the items' claims on their packs, which Compact then
// judges like any other.
func (s *Store) release(items []stagedItem) {
	for _, it := range items {
		s.setInflight(it.pack.id, -1)
	}
}

// CommitStaged implements blockstore.Stager: it writes the open pack if
// it holds any of the blocks, then indexes the blocks, one transaction per
// pack.
func (s *Store) CommitStaged(ctx context.Context, sts []blockstore.Staged) error {
	var items []stagedItem
	for _, x := range sts {
		st, ok := x.(*staged)
		if !ok {
			return fmt.Errorf("s3store: commit staged: %T is not from this store", x)
		}
		items = append(items, st.items...)
	}
	defer s.release(items)
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("s3store: commit staged: %w", err)
	}
	defer s.exit()
	s.stageMu.Lock()
	for _, it := range items {
		if it.pack == s.open {
			s.seal(ctx) // its error is the pack's, reported below
			break
		}
	}
	s.stageMu.Unlock()
	var order []*openPack
	byPack := map[*openPack][]indexItem{}
	for _, it := range items {
		if byPack[it.pack] == nil {
			order = append(order, it.pack)
		}
		byPack[it.pack] = append(byPack[it.pack], it.idx)
	}
	var first error
	for _, op := range order {
		err := op.err
		if err == nil {
			err = s.indexPack(ctx, op.id, op.rec, byPack[op])
		}
		if err != nil && first == nil {
			first = fmt.Errorf("s3store: commit staged: %w", err)
		}
	}
	return first
}
