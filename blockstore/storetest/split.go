package storetest

import (
	"context"

	"github.com/dvfs-project/dvfs/blockstore"
)

// SplitStore keeps blocks in Store and metadata in Meta, as a server whose
// metadata is in etcd does (dvfs serve --meta): tests of several servers
// over one repository give each its own Meta client of one cluster.
type SplitStore struct {
	blockstore.Store
	Meta blockstore.MetaStore
}

var _ blockstore.MetaWatcher = SplitStore{}

// GetMeta implements blockstore.MetaStore.
func (s SplitStore) GetMeta(ctx context.Context, key string) ([]byte, error) {
	return s.Meta.GetMeta(ctx, key)
}

// ListMeta implements blockstore.MetaStore.
func (s SplitStore) ListMeta(ctx context.Context, prefix string, fn func(string, []byte) error) error {
	return s.Meta.ListMeta(ctx, prefix, fn)
}

// CommitMeta implements blockstore.MetaStore.
func (s SplitStore) CommitMeta(ctx context.Context, ops ...blockstore.MetaOp) error {
	return s.Meta.CommitMeta(ctx, ops...)
}

// WatchMeta implements blockstore.MetaWatcher when Meta does.
func (s SplitStore) WatchMeta(ctx context.Context, prefix string, fn func(blockstore.MetaEvent) error) error {
	return blockstore.WatchMetaUnder(ctx, s.Meta, "", prefix, fn)
}
