package etcdmeta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/dvfs-project/dvfs/blockstore"
)

var _ blockstore.MetaWatcher = (*Store)(nil)

// Watch retries: a watch or listing that failed for another reason than
// the caller's (no leader, no member reachable for Timeout) is tried
// again after a pause that doubles from watchRetryMin to watchRetryMax.
const (
	watchRetryMin = 100 * time.Millisecond
	watchRetryMax = 5 * time.Second
)

// WatchMeta implements blockstore.MetaWatcher with an etcd watch from the
// revision of its first listing on. The client moves the watch to
// another member when its member goes away and resumes it after the last
// revision received; a watch that etcd cancels (its member lost the
// leader: the watch asks for one, so a member cut off from the quorum
// does not leave it waiting in silence) is opened again from there. When
// that revision was compacted meanwhile, the prefix is listed again
// (Resync) and the watch resumes after the listing's revision.
func (s *Store) WatchMeta(ctx context.Context, prefix string, fn func(blockstore.MetaEvent) error) error {
	w := &watch{s: s, prefix: prefix, fn: fn, known: make(map[string]struct{})}
	from := s.cfg.Prefix + prefix
	end := clientv3.GetPrefixRangeEnd(from)
	if from == "" {
		from = "\x00"
	}
	rev, err := w.list(ctx, true)
	if err != nil {
		return err
	}
	pause := watchRetryMin
	for {
		wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		var (
			compacted bool
			why       error
		)
		for resp := range s.cli.Watch(wctx, from, clientv3.WithRange(end), clientv3.WithRev(rev+1)) {
			if resp.CompactRevision != 0 {
				compacted = true
				break
			}
			if err := resp.Err(); err != nil {
				why = err
				break
			}
			for _, ev := range resp.Events {
				e := blockstore.MetaEvent{Key: string(ev.Kv.Key)[len(s.cfg.Prefix):]}
				if ev.Type == mvccpb.DELETE {
					e.Deleted = true
					delete(w.known, e.Key)
				} else {
					e.Value = append([]byte{}, ev.Kv.Value...)
					w.known[e.Key] = struct{}{}
				}
				if err := fn(e); err != nil {
					cancel()
					return err
				}
			}
			if n := len(resp.Events); n > 0 {
				rev = resp.Events[n-1].Kv.ModRevision
				pause = watchRetryMin
			}
		}
		cancel()
		if err := s.check(ctx); err != nil {
			return fmt.Errorf("etcdmeta: watch %q: %w", prefix, err)
		}
		if compacted {
			s.cfg.Logger.Warn("etcdmeta: the watch's revision was compacted; listing again", "prefix", prefix, "after", rev)
			if rev, err = w.list(ctx, false); err != nil {
				return err
			}
			continue
		}
		s.cfg.Logger.Warn("etcdmeta: watch ended; opening it again", "prefix", prefix, "after", rev, "err", why)
		if err := sleep(ctx, &pause); err != nil {
			return fmt.Errorf("etcdmeta: watch %q: %w", prefix, err)
		}
	}
}

// watch is what WatchMeta keeps between its listings: the keys it told
// of, so that a listing after a gap tells of the deleted ones too.
type watch struct {
	s      *Store
	prefix string
	fn     func(blockstore.MetaEvent) error
	known  map[string]struct{}
}

// list lists the prefix (retrying until it works, ctx ends or the store
// closes), tells fn of each key present (the first time, initial, its key
// only) and, unless initial, of each known key that is gone, and returns
// the listing's revision.
func (w *watch) list(ctx context.Context, initial bool) (int64, error) {
	pause := watchRetryMin
	for {
		var fnErr error
		seen := make(map[string]struct{}, len(w.known))
		rev, err := w.s.list(ctx, w.prefix, initial, func(key string, value []byte) error {
			seen[key] = struct{}{}
			e := blockstore.MetaEvent{Key: key, Initial: initial, Resync: !initial}
			if !initial {
				e.Value = append([]byte{}, value...)
			}
			fnErr = w.fn(e)
			return fnErr
		})
		switch {
		case fnErr != nil:
			return 0, fnErr
		case err == nil:
			for key := range w.known {
				if _, ok := seen[key]; !ok {
					if err := w.fn(blockstore.MetaEvent{Key: key, Deleted: true, Resync: true}); err != nil {
						return 0, err
					}
				}
			}
			w.known = seen
			return rev, nil
		case errors.Is(err, blockstore.ErrClosed) || ctx.Err() != nil:
			return 0, fmt.Errorf("etcdmeta: watch %q: %w", w.prefix, err)
		}
		// A listing that fails halfway is told again whole: fn may see
		// a key twice, each time as the same kind.
		w.s.cfg.Logger.Warn("etcdmeta: listing for a watch failed; trying again", "prefix", w.prefix, "err", err)
		if err := sleep(ctx, &pause); err != nil {
			return 0, fmt.Errorf("etcdmeta: watch %q: %w", w.prefix, err)
		}
	}
}

// sleep waits *pause (or until ctx ends) and doubles it, up to
// watchRetryMax.
func sleep(ctx context.Context, pause *time.Duration) error {
	t := time.NewTimer(*pause)
	defer t.Stop()
	*pause = min(2**pause, watchRetryMax)
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
