package badgerstore

import (
	"context"
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"

	"github.com/dvfs-project/dvfs/blockstore"
)

// cvKey returns the key of block id's sector chaining values.
func cvKey(id blockstore.ID) [blockKeyLen]byte {
	var k [blockKeyLen]byte
	k[0] = cvPrefix
	copy(k[1:], id[:])
	return k
}

// SectorCVs appends to dst the sector chaining values of block id
// (blockstore.AppendSectorCVs), which a store with Config.VerifiedPuts
// keeps for every block it was given whose length has them. They are
// checked before they are returned: their root must be id. ErrNotFound
// when the store holds none for id (not kept, or kept by an older
// version); ErrCorrupt when they do not hash to id.
func (s *Store) SectorCVs(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if err := s.enter(ctx); err != nil {
		return dst, fmt.Errorf("badgerstore: sector CVs of %s: %w", id.Short(), err)
	}
	defer s.exit()
	if id.IsHole() {
		return dst, fmt.Errorf("badgerstore: sector CVs: %w", errHole)
	}
	out := dst
	err := s.db.View(func(txn *badger.Txn) error {
		k := cvKey(id)
		item, err := txn.Get(k[:])
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error {
			out = append(dst, v...)
			return nil
		})
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return dst, fmt.Errorf("badgerstore: sector CVs of %s: %w", id.Short(), blockstore.ErrNotFound)
	}
	if err != nil {
		return dst, fmt.Errorf("badgerstore: sector CVs of %s: %w", id.Short(), err)
	}
	if root, err := blockstore.RootOfCVs(out[len(dst):]); err != nil || root != id {
		return dst, fmt.Errorf("badgerstore: sector CVs of %s: %w: they hash to %s", id.Short(), blockstore.ErrCorrupt, root.Short())
	}
	return out, nil
}
