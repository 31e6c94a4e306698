package server

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// Access to other users' clones: admins list, read and remove any
// user's; members of a group a clone is shared with read its latest
// generation and clone it; nobody writes another user's clone. Every
// check is here, on the server, and every refusal is logged naming who
// asked for what.

// errForbidden: the caller may not do this (403).
var errForbidden = errors.New("forbidden")

// cloneAccess is what a request does to a clone.
type cloneAccess int

const (
	// readShared reads the clone's record or its latest generation:
	// its owner, an admin, or a member of a group it is shared with.
	readShared cloneAccess = iota
	// readClone reads the rest (history, older generations): its owner
	// or an admin.
	readClone
	// writeClone changes it (lease, commit, snapshot, revert, sharing):
	// its owner only.
	writeClone
	// removeClone removes it: its owner or an admin.
	removeClone
)

func (a cloneAccess) String() string {
	return [...]string{"read", "read the history of", "write", "remove"}[a]
}

// groupsOf returns p's groups: those its token or directory gave it
// (api.Principal.Groups) and those the server's config gives its name
// (Config.Groups).
func (s *Server) groupsOf(p repo.Principal) []string {
	local := s.memberOf[p.Name]
	if len(local) == 0 {
		return p.Groups
	}
	out := slices.Concat(p.Groups, local)
	slices.Sort(out)
	return slices.Compact(out)
}

// memberships inverts Config.Groups: member -> groups.
func memberships(groups map[string][]string) map[string][]string {
	out := make(map[string][]string)
	for g, members := range groups {
		for _, m := range members {
			out[m] = append(out[m], g)
		}
	}
	for _, gs := range out {
		slices.Sort(gs)
	}
	return out
}

// ValidGroups checks the names of Config.Groups.
func ValidGroups(groups map[string][]string) error {
	for g, members := range groups {
		if err := api.ValidGroupName(g); err != nil {
			return fmt.Errorf("group %q: %w", g, err)
		}
		for _, m := range members {
			if err := api.ValidPrincipalName(m); err != nil {
				return fmt.Errorf("group %s: member %q: %w", g, m, err)
			}
		}
	}
	return nil
}

// target returns whose clone name the request is about (?owner=, by
// default the caller), once the caller may do access to it; else an error
// wrapping errForbidden, logged with who asked for what.
func (s *Server) target(r *http.Request, name string, access cloneAccess) (string, error) {
	p := principal(r)
	who := r.URL.Query().Get(api.QueryOwner)
	if who == "" || who == p.Name {
		return p.Name, nil
	}
	if err := api.ValidPrincipalName(who); err != nil {
		return "", fmt.Errorf("%w: owner: %v", errBadRequest, err)
	}
	ok := false
	switch {
	case p.Role == api.RoleAdmin:
		ok = access == readShared || access == readClone || access == removeClone
	case access == readShared && name != "":
		shared, err := s.repo.SharedWithAny(r.Context(), who, name, s.groupsOf(p))
		if err != nil {
			return "", err
		}
		ok = shared
	}
	if ok {
		return who, nil
	}
	return "", s.refuse(r, who, name, access)
}

// refuse logs a refused request for owner's clone name (all of owner's
// clones when name is "") and returns its error.
func (s *Server) refuse(r *http.Request, owner, name string, access cloneAccess) error {
	p := principal(r)
	what := "the clones"
	if name != "" {
		what = "clone " + name
	}
	s.log.Warn("refused access to another user's clone", "principal", p.Name, "role", p.Role, "route", r.Pattern,
		"owner", owner, "clone", name, "access", access.String(), "client", r.RemoteAddr)
	why := "only its owner may"
	switch access {
	case readShared:
		why = "it is not shared with a group of yours"
	case readClone, removeClone:
		why = "only its owner or an admin may"
	}
	return fmt.Errorf("%w: %s may not %s %s's %s: %s", errForbidden, p.Name, access, owner, what, why)
}

// listClones lists the caller's clones; ?owner=NAME another user's and
// ?all every user's (an admin); ?shared those shared with the caller.
func (s *Server) listClones(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	var (
		list []api.CloneInfo
		err  error
	)
	switch {
	case q.Has("shared"):
		list, err = s.repo.SharedWith(r.Context(), s.groupsOf(principal(r)))
	case q.Has("all"):
		if principal(r).Role != api.RoleAdmin {
			return s.refuse(r, "every user", "", readShared)
		}
		list, err = s.repo.Clones(r.Context(), "")
	default:
		var who string
		if who, err = s.target(r, "", readClone); err != nil {
			return err
		}
		list, err = s.repo.Clones(r.Context(), who)
	}
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, list)
}

func (s *Server) share(w http.ResponseWriter, r *http.Request) error {
	name, err := cloneName(r)
	if err != nil {
		return err
	}
	group := r.PathValue("group")
	if err := api.ValidGroupName(group); err != nil {
		return fmt.Errorf("%w: group: %v", errBadRequest, err)
	}
	who, err := s.target(r, name, writeClone)
	if err != nil {
		return err
	}
	info, err := s.repo.Share(r.Context(), who, name, group, r.Method == http.MethodPut)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}

// createCloneFrom makes the caller's clone m from ?from=OWNER/NAME, a
// clone shared with them (or their own).
func (s *Server) createCloneFrom(r *http.Request, m *manifest.Manifest, from string) (api.CloneInfo, error) {
	srcOwner, src, ok := strings.Cut(from, "/")
	if !ok {
		return api.CloneInfo{}, fmt.Errorf("%w: from %q is not OWNER/NAME", errBadRequest, from)
	}
	if err := api.ValidPrincipalName(srcOwner); err != nil {
		return api.CloneInfo{}, fmt.Errorf("%w: from: %v", errBadRequest, err)
	}
	if err := manifest.ValidName(src); err != nil {
		return api.CloneInfo{}, fmt.Errorf("%w: from: %v", errBadRequest, err)
	}
	p := principal(r)
	groups := s.groupsOf(p)
	ok, err := s.repo.SharedWithAny(r.Context(), srcOwner, src, groups)
	if err != nil {
		return api.CloneInfo{}, err
	}
	if !ok {
		return api.CloneInfo{}, s.refuse(r, srcOwner, src, readShared)
	}
	if err := s.mayName(r, m); err != nil {
		return api.CloneInfo{}, err
	}
	return s.repo.CreateCloneFrom(r.Context(), p.Name, m, srcOwner, src, groups)
}

func (s *Server) quota(w http.ResponseWriter, r *http.Request) error {
	user := r.PathValue("user")
	if err := api.ValidPrincipalName(user); err != nil {
		return fmt.Errorf("%w: user: %v", errBadRequest, err)
	}
	p := principal(r)
	if user != p.Name && p.Role != api.RoleAdmin {
		s.log.Warn("refused another user's quota", "principal", p.Name, "route", r.Pattern, "user", user, "client", r.RemoteAddr)
		return fmt.Errorf("%w: %s may not read %s's quota: only they or an admin may", errForbidden, p.Name, user)
	}
	info, err := s.repo.Quota(r.Context(), user)
	if err != nil {
		return err
	}
	return writeJSON(w, http.StatusOK, info)
}

func (s *Server) setQuota(w http.ResponseWriter, r *http.Request) error {
	user := r.PathValue("user")
	if err := api.ValidPrincipalName(user); err != nil {
		return fmt.Errorf("%w: user: %v", errBadRequest, err)
	}
	var req api.QuotaRequest
	if err := decodeJSON(w, r, &req); err != nil {
		return err
	}
	if err := s.repo.SetQuota(r.Context(), user, req.Bytes, req.Default); err != nil {
		return err
	}
	s.log.Info("quota set", "principal", principal(r).Name, "user", user, "bytes", req.Bytes, "default", req.Default)
	return s.quota(w, r)
}
