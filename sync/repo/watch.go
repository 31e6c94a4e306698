package repo

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// WatchCatalog follows, through the store's watch (blockstore.MetaWatcher:
// etcd), what other servers sharing the repository commit, until ctx ends
// or the store closes:
//
//   - onVersion is called once for each template version committed after
//     the watch began, through any server, this one included (a version
//     that was there when it began is not told). After a gap in the
//     store's history (Resync) it is called for the versions found that
//     it had not been told of.
//   - a new template version's blocks join the template access set at
//     once, as this server's own commits do;
//   - a user's or group's access set whose revision another server
//     changed is dropped, to be built again on its next use, instead of
//     on the first read it refuses (UnreadableNow, which still checks).
//
// onVersion's calls are not concurrent. It returns an error wrapping
// errors.ErrUnsupported, at once, when the store cannot watch (the
// embedded store, whose only writer is this server).
func (r *Repo) WatchCatalog(ctx context.Context, onVersion func(name string, version uint64)) error {
	w, ok := r.store.(blockstore.MetaWatcher)
	if !ok {
		return fmt.Errorf("repo: watch: %T: %w", r.store, errors.ErrUnsupported)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg   sync.WaitGroup
		errs [2]error
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		errs[0] = w.WatchMeta(ctx, "acc/", r.accessChanged)
		cancel()
	}()
	known := make(map[string]map[uint64]bool) // versions told or there at the start
	errs[1] = w.WatchMeta(ctx, prefixTemplates, func(e blockstore.MetaEvent) error {
		if k, _ := keyKind(e.Key); k != keyTemplateMan || e.Deleted {
			return nil
		}
		p := strings.Split(strings.TrimPrefix(e.Key, prefixTemplates), "/")
		name := p[0]
		v, err := strconv.ParseUint(p[2], 10, 64)
		if err != nil || known[name][v] {
			return nil
		}
		if known[name] == nil {
			known[name] = make(map[uint64]bool)
		}
		known[name][v] = true
		if e.Initial {
			return nil
		}
		r.versionCommitted(e.Key, e.Value)
		onVersion(name, v)
		return nil
	})
	cancel()
	wg.Wait()
	return errors.Join(errs[:]...)
}

// versionCommitted adds the blocks of a template version, committed
// through any server, to the template set if it is built.
func (r *Repo) versionCommitted(key string, signed []byte) {
	m, _, err := manifest.Open(signed, r.PublicKey())
	if err != nil {
		r.log.Error("watched template version does not verify", "key", key, "err", err)
		return
	}
	var ids []blockstore.ID
	for id := range m.BlockIDs() {
		ids = append(ids, id)
	}
	a := &r.access
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.templates != nil {
		a.addTemplatesLocked(ids)
	}
}

// accessChanged drops the set whose revision another server changed.
// The template set's revision is left to versionCommitted: it only grows.
func (r *Repo) accessChanged(e blockstore.MetaEvent) error {
	if e.Initial {
		return nil
	}
	a := &r.access
	a.mu.Lock()
	defer a.mu.Unlock()
	if !e.Deleted && a.mine[e.Key] == string(e.Value) {
		return nil // this server's own commit, which grew its set
	}
	switch {
	case strings.HasPrefix(e.Key, prefixRevOwner):
		delete(a.owners, strings.TrimPrefix(e.Key, prefixRevOwner))
	case strings.HasPrefix(e.Key, prefixRevGroup):
		delete(a.groups, strings.TrimPrefix(e.Key, prefixRevGroup))
	default:
		return nil
	}
	delete(a.revs, e.Key)
	return nil
}
