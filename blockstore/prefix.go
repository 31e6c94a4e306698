package blockstore

import (
	"context"
	"strings"
)

// PrefixMeta returns a MetaStore that keeps its keys under prefix in ms,
// so several users of one store cannot see or clash with each other's keys
// (one workstation's cache holds every local user's overlays).
func PrefixMeta(ms MetaStore, prefix string) MetaStore {
	return prefixMeta{ms: ms, prefix: prefix}
}

type prefixMeta struct {
	ms     MetaStore
	prefix string
}

func (p prefixMeta) GetMeta(ctx context.Context, key string) ([]byte, error) {
	return p.ms.GetMeta(ctx, p.prefix+key)
}

func (p prefixMeta) ListMeta(ctx context.Context, prefix string, fn func(key string, value []byte) error) error {
	return p.ms.ListMeta(ctx, p.prefix+prefix, func(key string, value []byte) error {
		return fn(strings.TrimPrefix(key, p.prefix), value)
	})
}

func (p prefixMeta) CommitMeta(ctx context.Context, ops ...MetaOp) error {
	scoped := make([]MetaOp, len(ops))
	for i, op := range ops {
		op.Key = p.prefix + op.Key
		scoped[i] = op
	}
	return p.ms.CommitMeta(ctx, scoped...)
}

// WatchMeta implements MetaWatcher when ms does.
func (p prefixMeta) WatchMeta(ctx context.Context, prefix string, fn func(MetaEvent) error) error {
	return WatchMetaUnder(ctx, p.ms, p.prefix, prefix, fn)
}
