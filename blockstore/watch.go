package blockstore

import (
	"context"
	"errors"
	"fmt"
	"strings"
)

// MetaEvent is one key's state as a MetaWatcher tells it.
type MetaEvent struct {
	// Key is the metadata key.
	Key string
	// Value is the key's new value (empty, not nil, for an empty value);
	// nil when Deleted or Initial.
	Value []byte
	// Deleted: the key was deleted.
	Deleted bool
	// Initial: the event comes from the listing the watch began with,
	// the keys as they were before any change it reports. It carries the
	// key only: a watcher over a prefix of large values (manifests) reads
	// none of them to begin; the caller reads those it needs.
	Initial bool
	// Resync: the event comes from a listing made after the store lost
	// the changes since the last event (etcd compacted them): the key was
	// put or deleted in that gap, or may have held this value before.
	Resync bool
}

// MetaWatcher is a MetaStore that tells its readers of changes as they
// commit, whoever commits them (another server over the same etcd
// cluster). It is optional: a store without it has one writer, the
// server itself.
type MetaWatcher interface {
	// WatchMeta calls fn for every key with the prefix as it is now
	// (Initial), then for every change to such a key, in commit order,
	// each commit's changes together, until ctx ends or fn fails. When
	// the store can no longer tell every change since the last one, it
	// lists the prefix again and calls fn (Resync) for each key now
	// present and for each key told of before that is gone, then goes on
	// with the changes after that listing: no change is lost silently,
	// though a Resync may repeat one. It returns fn's error, or the
	// context's, or an error that ends the store (ErrClosed). Calls of fn
	// are not concurrent; Value is fn's to keep. A store that keeps its
	// metadata in another (s3store) returns an error wrapping
	// errors.ErrUnsupported when that one cannot watch.
	WatchMeta(ctx context.Context, prefix string, fn func(MetaEvent) error) error
}

// WatchMetaUnder is ms's WatchMeta of under+prefix, with the keys told
// to fn without under: what a store keeping its metadata in ms under
// its own prefix implements WatchMeta with. When ms cannot watch it
// returns an error wrapping errors.ErrUnsupported.
func WatchMetaUnder(ctx context.Context, ms MetaStore, under, prefix string, fn func(MetaEvent) error) error {
	w, ok := ms.(MetaWatcher)
	if !ok {
		return fmt.Errorf("watch %q: %T: %w", prefix, ms, errors.ErrUnsupported)
	}
	return w.WatchMeta(ctx, under+prefix, func(e MetaEvent) error {
		e.Key = strings.TrimPrefix(e.Key, under)
		return fn(e)
	})
}
