package badgerstore

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/dvfs-project/dvfs/blockstore"
)

func metaKey(key string) []byte {
	k := make([]byte, 1+len(key))
	k[0] = metaPrefix
	copy(k[1:], key)
	return k
}

// GetMeta implements blockstore.MetaStore.
func (s *Store) GetMeta(ctx context.Context, key string) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return nil, fmt.Errorf("badgerstore: get meta %q: %w", key, err)
	}
	defer s.exit()
	var v []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(metaKey(key))
		if err != nil {
			return err
		}
		v, err = item.ValueCopy(nil)
		return err
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("badgerstore: get meta %q: %w", key, blockstore.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("badgerstore: get meta %q: %w", key, err)
	}
	if v == nil {
		v = []byte{} // present but empty, which nil would not say
	}
	return v, nil
}

// ListMeta implements blockstore.MetaStore. fn runs inside a read
// transaction; it may call the store.
func (s *Store) ListMeta(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: list meta %q: %w", prefix, err)
	}
	defer s.exit()
	var fnErr error
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		// Values are read one at a time below: a prefetch of 100 large
		// values (manifests) would hold them all in memory at once.
		opts.PrefetchValues = false
		opts.Prefix = metaKey(prefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			if err := ctx.Err(); err != nil {
				return err
			}
			item := it.Item()
			key := string(item.Key()[1:])
			if err := item.Value(func(v []byte) error {
				fnErr = fn(key, v)
				return fnErr
			}); err != nil {
				return err
			}
		}
		return nil
	})
	if fnErr != nil {
		return fnErr // fn's own error, unwrapped
	}
	if err != nil {
		return fmt.Errorf("badgerstore: list meta %q: %w", prefix, err)
	}
	return nil
}

// errCheck marks a failed Check inside the transaction.
var errCheck = errors.New("check failed")

// CommitMeta implements blockstore.MetaStore in one read-write transaction,
// synced before it returns (SyncWrites). Badger detects when another
// commit wrote a key this one checked; the commit then runs again, against
// the new values.
func (s *Store) CommitMeta(ctx context.Context, ops ...blockstore.MetaOp) error {
	if err := s.enter(ctx); err != nil {
		return fmt.Errorf("badgerstore: commit meta: %w", err)
	}
	defer s.exit()
	if len(ops) == 0 {
		return nil
	}
	for {
		var failed string
		err := s.db.Update(func(txn *badger.Txn) error {
			for _, op := range ops {
				k := metaKey(op.Key)
				if op.Check {
					ok, err := matches(txn, k, op.Old)
					if err != nil {
						return err
					}
					if !ok {
						failed = op.Key
						return errCheck
					}
				}
				var err error
				if op.Value == nil {
					err = txn.Delete(k)
				} else {
					err = txn.Set(k, op.Value)
				}
				if err != nil {
					return fmt.Errorf("%q: %w", op.Key, err)
				}
			}
			return nil
		})
		switch {
		case err == nil:
			return nil
		case errors.Is(err, errCheck):
			return fmt.Errorf("badgerstore: commit meta %q: %w", failed, blockstore.ErrConflict)
		case errors.Is(err, badger.ErrConflict):
			// A concurrent commit changed a key we read: check again.
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("badgerstore: commit meta: %w", err)
			}
			continue
		default:
			return fmt.Errorf("badgerstore: commit meta: %w", err)
		}
	}
}

// matches reports whether key's value in txn is old (nil old: absent).
func matches(txn *badger.Txn, key, old []byte) (bool, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return old == nil, nil
	}
	if err != nil {
		return false, err
	}
	if old == nil {
		return false, nil
	}
	ok := false
	err = item.Value(func(v []byte) error {
		ok = bytes.Equal(v, old)
		return nil
	})
	return ok, err
}
