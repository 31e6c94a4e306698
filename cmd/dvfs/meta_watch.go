package main

import (
	"context"

	"github.com/dvfs-project/dvfs/blockstore"
)

// WatchMeta lets the repository watch the metadata in etcd
// (server.WatchCatalog): what other servers of the repository commit.
func (s metaStore) WatchMeta(ctx context.Context, prefix string, fn func(blockstore.MetaEvent) error) error {
	return s.meta.WatchMeta(ctx, prefix, fn)
}

// WatchMeta passes the object store's watch through to the metadata
// store it hides the Close of.
func (m metaOnly) WatchMeta(ctx context.Context, prefix string, fn func(blockstore.MetaEvent) error) error {
	return blockstore.WatchMetaUnder(ctx, m.MetaStore, "", prefix, fn)
}
