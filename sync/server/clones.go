package server

import (
	"fmt"
	"net/http"
	"slices"
	"strconv"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// principal is whom a request speaks for.
func principal(r *http.Request) repo.Principal {
	return r.Context().Value(principalKey{}).(repo.Principal)
}

// owner is the principal a request speaks for: clones are per owner.
func owner(r *http.Request) string { return principal(r).Name }

// mayName fails with a *repo.MissingError naming the blocks of m the
// caller may not read: a manifest's IDs are no proof of holding the
// bytes, so those must be uploaded (a cheap no-op for the store when it
// has them) before a clone of the caller's may name them.
func (s *Server) mayName(r *http.Request, m *manifest.Manifest) error {
	no, err := s.unreadable(r, slices.Collect(m.BlockIDs()))
	if err != nil {
		return err
	}
	if len(no) > 0 {
		return &repo.MissingError{IDs: no}
	}
	return nil
}

func (s *Server) whoAmI(w http.ResponseWriter, r *http.Request) error {
	return writeJSON(w, http.StatusOK, r.Context().Value(principalKey{}).(repo.Principal))
}

func cloneName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := manifest.ValidName(name); err != nil {
		return "", fmt.Errorf("%w: clone name: %v", errBadRequest, err)
	}
	return name, nil
}

func (s *Server) listClones(w http.ResponseWriter, r *http.Request) error {
	list, err := s.repo.Clones(r.Context(), owner(r))
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) createClone(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	template := r.URL.Query().Get("template")
	if err := manifest.ValidName(template); err != nil {
		return fmt.Errorf("%w: template: %v", errBadRequest, err)
	}
	var version uint64
	if vs := r.URL.Query().Get("version"); vs != "" && vs != "latest" {
		if version, err = strconv.ParseUint(vs, 10, 64); err != nil || version == 0 {
			return fmt.Errorf("%w: version %q", errBadRequest, vs)
		}
	}
	body, err := readBody(w, r, api.MaxManifestBytes)
	if err != nil {
		return err
	}
	m, err := manifest.Unmarshal(body)
	if err != nil {
		return err
	}
	if m.Name != name {
		return fmt.Errorf("%w: manifest names %q, URL %q", errBadRequest, m.Name, name)
	}
	if err := s.mayName(r, m); err != nil {
		return err
	}
	info, err := s.repo.CreateClone(r.Context(), owner(r), m, template, version)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusCreated, info)
}

func (s *Server) clone(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	info, err := s.repo.Clone(r.Context(), owner(r), name)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}

func (s *Server) cloneSigned(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	b, err := s.repo.CloneSigned(r.Context(), owner(r), name)
	if err != nil {
		return err
	}
	return writeSigned(w, b)
}

func (s *Server) removeClone(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	if err := s.repo.RemoveClone(r.Context(), owner(r), name); err != nil {
		return err
	}
	w.WriteHeader(http.StatusNoContent)
	return nil
}
