package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
)

// WatchCatalog follows the repository's changes made through any of its
// servers (repo.WatchCatalog, over etcd) until ctx ends: the access sets
// another server changed are dropped early and, with Multicast and
// PushOnPublish, a session starts for each template version committed
// through any server after the watch began, once per version on this
// server, whether its publish came through this server or another. It
// returns nil at once when the store cannot watch (a repository of one
// server, whose own publishes start their sessions).
func (s *Server) WatchCatalog(ctx context.Context) error {
	err := s.repo.WatchCatalog(ctx, func(name string, version uint64) {
		s.pushOnce(ctx, name, version)
	})
	if errors.Is(err, errors.ErrUnsupported) {
		return nil
	}
	return err
}

// pushes records the versions this server started a session for on
// publish.
type pushes struct {
	mu   sync.Mutex
	done map[string]bool // "NAME@VERSION"
}

// pushOnce starts a multicast session for name@version if the server
// pushes on publish and has not started one for it yet: the publish
// handler and the watch both tell of a version published through this
// server.
func (s *Server) pushOnce(ctx context.Context, name string, version uint64) {
	if s.cfg.Multicast == nil || !s.cfg.PushOnPublish {
		return
	}
	key := fmt.Sprintf("%s@%d", name, version)
	p := &s.pushes
	p.mu.Lock()
	if p.done[key] {
		p.mu.Unlock()
		return
	}
	if p.done == nil {
		p.done = make(map[string]bool)
	}
	p.done[key] = true
	p.mu.Unlock()
	if _, err := s.cfg.Multicast.Push(ctx, name, version); err != nil {
		s.log.Error("no multicast session for the new version", "template", name, "version", version, "err", err)
	}
}
