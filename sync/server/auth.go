package server

import (
	"context"
	"errors"
	"net/http"
	"strings"

	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/repo"
)

type principalKey struct{}

// handle registers h behind authentication: the bearer token must name a
// principal whose role is role, or admin (which may do everything).
func (s *Server) handle(pattern, role string, h func(http.ResponseWriter, *http.Request) error) {
	s.mux.HandleFunc(pattern, func(w http.ResponseWriter, r *http.Request) {
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok {
			s.fail(w, r, http.StatusUnauthorized, errors.New("missing bearer token (dvfs login, or give --token or DVFS_TOKEN)"))
			return
		}
		p, err := s.repo.Authenticate(r.Context(), token)
		if errors.Is(err, repo.ErrBadToken) {
			s.refusedToken(w, r, p, err)
			return
		}
		if err != nil {
			s.fail(w, r, http.StatusInternalServerError, err)
			return
		}
		if p.Source == api.SourceDirectory {
			dp, err := s.directoryPrincipal(r.Context(), p)
			if err != nil {
				status := http.StatusServiceUnavailable
				if errors.Is(err, errTokenRefused) {
					status = http.StatusUnauthorized
				}
				s.fail(w, withPrincipal(r, p), status, err)
				return
			}
			p = dp
		}
		r = withPrincipal(r, p)
		if p.Role != api.RoleAdmin && p.Role != role {
			s.fail(w, r, http.StatusForbidden, errors.New("this needs a token with role "+role))
			return
		}
		if b, ok := r.Body.(*limitedBody); ok {
			b.user = p.Name
		}
		if err := h(w, r); err != nil {
			s.fail(w, r, statusOf(err), err)
		}
	})
}

// withPrincipal is r speaking for p: handlers read it with principal, and
// a refusal's log line names p.
func withPrincipal(r *http.Request, p repo.Principal) *http.Request {
	return r.WithContext(context.WithValue(r.Context(), principalKey{}, p))
}
