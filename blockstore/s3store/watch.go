package s3store

import (
	"context"

	"github.com/dvfs-project/dvfs/blockstore"
)

var _ blockstore.MetaWatcher = (*Store)(nil)

// WatchMeta implements blockstore.MetaWatcher when Config.Meta does
// (etcdmeta); it sees the keys of GetMeta, not the block index's. It
// holds no call open against Close: closing Config.Meta ends it.
func (s *Store) WatchMeta(ctx context.Context, prefix string, fn func(blockstore.MetaEvent) error) error {
	return blockstore.WatchMetaUnder(ctx, s.meta, userPrefix, prefix, fn)
}
