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

// whoAmI answers the caller's principal, with all its groups: the
// token's or directory's and the server's own (groupsOf).
func (s *Server) whoAmI(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	p.Groups = s.groupsOf(p)
	return writeJSON(w, http.StatusOK, p)
}

func cloneName(r *http.Request) (string, error) {
	name := r.PathValue("name")
	if err := manifest.ValidName(name); err != nil {
		return "", fmt.Errorf("%w: clone name: %v", errBadRequest, err)
	}
	return name, nil
}

func (s *Server) createClone(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	if _, err := s.target(r, name, writeClone); err != nil {
		return err
	}
	from := r.URL.Query().Get(api.QueryFrom)
	template := r.URL.Query().Get("template")
	if err := manifest.ValidName(template); err != nil && from == "" {
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
	var info api.CloneInfo
	if from != "" {
		info, err = s.createCloneFrom(r, m, from)
	} else if err = s.mayName(r, m); err == nil {
		info, err = s.repo.CreateClone(r.Context(), owner(r), m, template, version)
	}
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
	who, err := s.target(r, name, readShared)
	if err != nil {
		return err
	}
	info, err := s.repo.Clone(r.Context(), who, name)
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
	who, err := s.target(r, name, readShared)
	if err != nil {
		return err
	}
	b, err := s.repo.CloneSigned(r.Context(), who, name)
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
	who, err := s.target(r, name, removeClone)
	if err != nil {
		return err
	}
	if err := s.repo.RemoveClone(r.Context(), who, name); err != nil {
		return err
	}
	s.log.Info("clone removed", "principal", principal(r).Name, "owner", who, "clone", name)
	w.WriteHeader(http.StatusNoContent)
	return nil
}
