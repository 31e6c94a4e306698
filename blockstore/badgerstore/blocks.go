package badgerstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/dvfs-project/dvfs/blockstore"
)

const (
	blockPrefix = 'b'
	metaPrefix  = 'm'
	blockKeyLen = 1 + blockstore.IDSize
)

// blockKey returns the key of block id, on the stack.
func blockKey(id blockstore.ID) [blockKeyLen]byte {
	var k [blockKeyLen]byte
	k[0] = blockPrefix
	copy(k[1:], id[:])
	return k
}

// errHole is returned for the hole, which is stored nowhere.
var errHole = fmt.Errorf("the hole is never stored: %w", blockstore.ErrNotFound)

// Get implements blockstore.Getter. It decodes straight from badger's value
// (the value log's memory map), without copying the frame first.
func (s *Store) Get(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return dst, fmt.Errorf("badgerstore: get %s: %w", id.Short(), err)
	}
	defer s.exit()
	if id.IsHole() {
		return dst, fmt.Errorf("badgerstore: get: %w", errHole)
	}
	out := dst
	err := s.view(id, func(v []byte) error {
		var err error
		out, err = blockstore.Open(id, v, dst)
		return err
	})
	if err != nil {
		return dst, s.readErr("get", id, err)
	}
	return out, nil
}

// GetFrame implements blockstore.FrameGetter.
func (s *Store) GetFrame(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return dst, fmt.Errorf("badgerstore: get frame %s: %w", id.Short(), err)
	}
	defer s.exit()
	if id.IsHole() {
		return dst, fmt.Errorf("badgerstore: get frame: %w", errHole)
	}
	out := dst
	err := s.view(id, func(v []byte) error {
		if err := blockstore.Verify(id, v); err != nil {
			return err
		}
		out = append(dst, v...)
		return nil
	})
	if err != nil {
		return dst, s.readErr("get frame", id, err)
	}
	return out, nil
}

// view calls fn with the stored frame of id, valid only during the call.
func (s *Store) view(id blockstore.ID, fn func([]byte) error) error {
	key := blockKey(id)
	return s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key[:])
		if err != nil {
			return err
		}
		return item.Value(fn)
	})
}

// readErr wraps an error of Get or GetFrame, and logs corrupt blocks: they
// mean a failing disk or tampering, which an operator must hear about.
func (s *Store) readErr(op string, id blockstore.ID, err error) error {
	switch {
	case errors.Is(err, badger.ErrKeyNotFound):
		return fmt.Errorf("badgerstore: %s %s: %w", op, id.Short(), blockstore.ErrNotFound)
	case errors.Is(err, blockstore.ErrCorrupt):
		s.log.Error("corrupt block in store", "block", id, "err", err)
		return fmt.Errorf("badgerstore: %s: %w", op, err)
	}
	return fmt.Errorf("badgerstore: %s %s: %w", op, id.Short(), err)
}

// Put implements blockstore.Putter. It looks up all blocks in one read
// transaction (keys only), then writes the absent ones in one WriteBatch,
// whose commits are synced (SyncWrites) before Flush returns.
func (s *Store) Put(ctx context.Context, blocks ...blockstore.Block) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	defer s.exit()
	var todo []blockstore.Block
	err := s.db.View(func(txn *badger.Txn) error {
		for _, b := range blocks {
			if err := ctx.Err(); err != nil {
				return err
			}
			if b.ID.IsHole() {
				continue
			}
			key := blockKey(b.ID)
			_, err := txn.Get(key[:])
			if errors.Is(err, badger.ErrKeyNotFound) {
				todo = append(todo, b)
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	if len(todo) == 0 {
		return nil
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	// The batch keeps the key slices until Flush: one array for all.
	keys := make([]byte, len(todo)*blockKeyLen)
	for i, b := range todo {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("badgerstore: put: %w", err)
		}
		k := keys[i*blockKeyLen : (i+1)*blockKeyLen]
		k[0] = blockPrefix
		copy(k[1:], b.ID[:])
		if err := wb.Set(k, b.Frame); err != nil {
			return fmt.Errorf("badgerstore: put %s: %w", b.ID.Short(), err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("badgerstore: put: %w", err)
	}
	return nil
}

// Missing implements blockstore.Checker, with one read transaction and no
// value reads.
func (s *Store) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("badgerstore: missing: %w", err)
	}
	defer s.exit()
	var missing []blockstore.ID
	err := s.db.View(func(txn *badger.Txn) error {
		for _, id := range ids {
			if err := ctx.Err(); err != nil {
				return err
			}
			if id.IsHole() {
				continue
			}
			key := blockKey(id)
			_, err := txn.Get(key[:])
			if errors.Is(err, badger.ErrKeyNotFound) {
				missing = append(missing, id)
			} else if err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("badgerstore: missing: %w", err)
	}
	return missing, nil
}

// Delete implements blockstore.Deleter. The space comes back when value log
// GC rewrites the files that held the frames.
func (s *Store) Delete(ctx context.Context, ids ...blockstore.ID) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: delete: %w", err)
	}
	defer s.exit()
	if len(ids) == 0 {
		return nil
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	keys := make([]byte, len(ids)*blockKeyLen)
	for i, id := range ids {
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("badgerstore: delete: %w", err)
		}
		if id.IsHole() {
			continue
		}
		k := keys[i*blockKeyLen : (i+1)*blockKeyLen]
		k[0] = blockPrefix
		copy(k[1:], id[:])
		if err := wb.Delete(k); err != nil {
			return fmt.Errorf("badgerstore: delete %s: %w", id.Short(), err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("badgerstore: delete: %w", err)
	}
	return nil
}

// Walk implements blockstore.Walker by iterating over keys only.
func (s *Store) Walk(ctx context.Context, fn func(blockstore.ID) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: walk: %w", err)
	}
	defer s.exit()
	var fnErr error
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.PrefetchValues = false
		opts.Prefix = []byte{blockPrefix}
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			k := it.Item().Key()
			if len(k) != blockKeyLen {
				s.log.Warn("malformed block key in store", "key", fmt.Sprintf("%x", k))
				continue
			}
			if fnErr = fn(blockstore.ID(k[1:])); fnErr != nil {
				return fnErr
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr // fn's own error, unwrapped
	}
	if err != nil {
		return fmt.Errorf("badgerstore: walk: %w", err)
	}
	return nil
}
