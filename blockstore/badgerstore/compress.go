package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/dvfs-project/dvfs/blockstore"
)

var _ blockstore.Compressor = (*Store)(nil)

// CompressDeferred implements blockstore.Compressor. It finds up to max
// blocks stored in deferred frames, reads and verifies each, encodes it,
// writes the new payloads (synced) and only then points the index entries
// at them, in one transaction; the old ranges are punched afterwards. A
// reader that was reading an old range follows the block to its new place
// (read). A block deleted meanwhile stays deleted, its new payload freed.
// A damaged block is left as it is, for Get to report.
func (s *Store) CompressDeferred(ctx context.Context, max int) (int, error) {
	if err := s.enter(ctx); err != nil {
		return 0, fmt.Errorf("badgerstore: compress: %w", err)
	}
	defer s.exit()
	s.compressMu.Lock()
	defer s.compressMu.Unlock()
	for {
		ids, olds, err := s.findDeferred(ctx, max)
		if err != nil || len(ids) == 0 {
			return 0, err
		}
		n, err := s.compress(ctx, ids, olds)
		if err != nil || n > 0 {
			return n, err
		}
		// Every one found was deleted or damaged meanwhile: look further.
	}
}

// compress replaces the deferred blocks ids, found at olds, and returns
// how many it replaced. A block that zstd does not shrink keeps its payload
// where it is: only its index entry's header changes, from deferred to raw.
func (s *Store) compress(ctx context.Context, ids []blockstore.ID, olds []ref) (int, error) {
	type move struct {
		id       blockstore.ID
		old, new ref
		rewrite  bool // a new payload, written elsewhere
		done     bool // committed
	}
	var moves []move
	var writes []blockstore.Block
	var plain []byte
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return 0, err
		}
		var err error
		plain, err = s.readPlain(id, &olds[i], plain[:0])
		if err != nil {
			if errors.Is(err, blockstore.ErrCorrupt) {
				// Damaged if it is still where it was read; otherwise
				// it was deleted meanwhile.
				if _, moved, lerr := s.relookup(id, &olds[i]); lerr == nil && !moved {
					s.log.Error("corrupt block in store", "block", id, "err", err)
					s.damaged[id] = true
				}
			}
			continue
		}
		frame := blockstore.Encode(nil, plain)
		hdr, _, err := blockstore.SplitFrame(frame)
		if err != nil {
			return 0, fmt.Errorf("badgerstore: compress %s: %w", id.Short(), err)
		}
		m := move{id: id, old: olds[i], new: olds[i]}
		if raw, _, _ := blockstore.RawHeader(hdr); raw {
			m.new.hdrLen = copy(m.new.hdr[:], hdr)
		} else {
			m.rewrite = true
			writes = append(writes, blockstore.Block{ID: id, Frame: frame})
		}
		moves = append(moves, m)
	}
	if len(moves) == 0 {
		return 0, nil
	}
	refs, err := s.storePayloads(writes)
	if err != nil {
		return 0, fmt.Errorf("badgerstore: compress: %w", err)
	}
	k := 0
	for i := range moves {
		if moves[i].rewrite {
			moves[i].new = refs[k]
			k++
		}
	}

	// Delete punches the ranges it reads from the index: while it runs, a
	// block must not move, or the range it punches would be the old one
	// and the new one would leak.
	s.moveMu.Lock()
	defer s.moveMu.Unlock()
	err = s.db.Update(func(txn *badger.Txn) error {
		for i := range moves {
			m := &moves[i]
			m.done = false
			key := blockKey(m.id)
			item, err := txn.Get(key[:])
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			} else if err != nil {
				return err
			}
			same := false
			if err := item.Value(func(v []byte) error {
				same = bytes.Equal(v, appendRef(nil, &m.old))
				return nil
			}); err != nil {
				return err
			}
			if !same {
				continue
			}
			if err := txn.Set(bytes.Clone(key[:]), appendRef(nil, &m.new)); err != nil {
				return err
			}
			m.done = true
		}
		return nil
	})
	if err != nil {
		s.free(refs)
		return 0, fmt.Errorf("badgerstore: compress: %w", err)
	}
	n := 0
	for i := range moves {
		m := &moves[i]
		if m.done {
			n++
		}
		switch {
		case m.rewrite && m.done:
			s.free([]ref{m.old})
		case m.rewrite:
			s.free([]ref{m.new})
		}
	}
	return n, nil
}

// findDeferred returns up to max blocks whose index entries name deferred
// frames, and those entries. It goes on from where the last call stopped,
// so that rounds over a large index do not scan its start again and
// again, and starts over once at the end: none found means none is left.
func (s *Store) findDeferred(ctx context.Context, max int) ([]blockstore.ID, []ref, error) {
	var ids []blockstore.ID
	var refs []ref
	scan := func(txn *badger.Txn, from []byte) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte{blockPrefix}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(from); it.Valid() && len(ids) < max; it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			if len(item.Key()) != blockKeyLen {
				continue
			}
			var r ref
			isRef := false
			if err := item.Value(func(v []byte) error {
				var err error
				isRef, err = parseRef(v, &r)
				if err != nil {
					isRef = false // a damaged entry is Get's to report
				}
				return nil
			}); err != nil {
				return err
			}
			if isRef && blockstore.Deferred(r.header()) && !s.damaged[blockstore.ID(item.Key()[1:])] {
				ids = append(ids, blockstore.ID(item.Key()[1:]))
				refs = append(refs, r)
			}
		}
		if it.Valid() {
			s.compressFrom = it.Item().KeyCopy(s.compressFrom[:0])
		} else {
			s.compressFrom = nil
		}
		return nil
	}
	err := s.db.View(func(txn *badger.Txn) error {
		if from := s.compressFrom; from != nil {
			if err := scan(txn, from); err != nil || len(ids) > 0 {
				return err
			}
		}
		return scan(txn, []byte{blockPrefix})
	})
	if err != nil {
		return nil, nil, fmt.Errorf("badgerstore: compress: %w", err)
	}
	return ids, refs, nil
}

// free punches the payloads of refs, which no index entry points at any
// more (deleted blocks, and the old or unused copies of moved ones). A
// punch that fails only loses space.
func (s *Store) free(refs []ref) {
	for i := range refs {
		if err := s.packs.punch(refs[i].pack, refs[i].off, int64(refs[i].n)); err != nil {
			s.log.Warn("freeing the space of a block nothing points at", "err", err)
		}
	}
}
