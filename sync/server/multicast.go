package server

import (
	"errors"
	"net/http"

	"github.com/dvfs-project/dvfs/sync/api"
)

var errNoMulticast = errors.New("this server runs no multicast sessions (start it with --multicast-group)")

func (s *Server) multicastList(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Multicast == nil {
		return writeJSON(w, http.StatusOK, []api.MulticastSession{})
	}
	return writeJSON(w, http.StatusOK, s.cfg.Multicast.List())
}

func (s *Server) multicastPush(w http.ResponseWriter, r *http.Request) error {
	if s.cfg.Multicast == nil {
		return errNoMulticast
	}
	var req api.PushRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	sess, err := s.cfg.Multicast.Push(r.Context(), req.Template, req.Version)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusAccepted, sess)
}
