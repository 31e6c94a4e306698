package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/repo"
)

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) error {
	body, err := readBody(w, r, api.MaxJSONBytes)
	if err != nil {
		return err
	}
	var req api.TokenRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return fmt.Errorf("%w: token request: %v", errBadRequest, err)
	}
	if req.ExpiresIn < 0 || req.ExpiresIn > int64(api.MaxTokenLifetime/time.Second) {
		return fmt.Errorf("%w: expires_in %d: want 0 (never) to %d seconds", errBadRequest, req.ExpiresIn, int64(api.MaxTokenLifetime/time.Second))
	}
	token, info, err := s.repo.IssueToken(r.Context(), repo.TokenSpec{Name: req.Name, Role: req.Role,
		Lifetime: time.Duration(req.ExpiresIn) * time.Second})
	if err != nil {
		return err
	}
	s.log.Info("token made", "user", info.Name, "role", info.Role, "token_id", info.TokenID, "by", principal(r).Name)
	return writeJSON(w, http.StatusCreated, tokenResponse(token, info))
}

func tokenResponse(token string, info api.TokenInfo) api.TokenResponse {
	return api.TokenResponse{Token: token, Name: info.Name, Role: info.Role, ID: info.TokenID, Expires: info.Expires}
}

// listTokens answers an admin with every user's tokens (or ?user's), a
// user with their own.
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	q := r.URL.Query()
	user := q.Get("user")
	if user != "" {
		if err := api.ValidPrincipalName(user); err != nil {
			return fmt.Errorf("%w: user: %v", errBadRequest, err)
		}
	}
	if p.Role != api.RoleAdmin {
		if user != "" && user != p.Name {
			s.fail(w, r, http.StatusForbidden, fmt.Errorf("%s may list only their own tokens, not %s's", p.Name, user))
			return nil
		}
		user = p.Name
	}
	list, err := s.repo.ListTokens(r.Context(), user, q.Has("all"))
	if err != nil {
		return err
	}
	if list == nil {
		list = []api.TokenInfo{}
	}
	return writeJSON(w, http.StatusOK, list)
}

// revokeToken revokes a token: an admin any, a user their own (another's
// is not found, as if it did not exist).
func (s *Server) revokeToken(w http.ResponseWriter, r *http.Request) error {
	p := principal(r)
	id := r.PathValue("id")
	if err := api.ValidTokenID(id); err != nil {
		return fmt.Errorf("%w: %v", errBadRequest, err)
	}
	owner := p.Name
	if p.Role == api.RoleAdmin {
		owner = ""
	}
	info, err := s.repo.RevokeToken(r.Context(), id, owner)
	if err != nil {
		return err
	}
	s.log.Info("token revoked", "user", info.Name, "token_id", info.TokenID, "by", p.Name)
	return writeJSON(w, http.StatusOK, info)
}

// refusedToken is the answer to a token the repository refused, and the
// log line naming whom it was for when it knows.
func (s *Server) refusedToken(w http.ResponseWriter, r *http.Request, p repo.Principal, err error) {
	if !errors.Is(err, repo.ErrTokenRevoked) && !errors.Is(err, repo.ErrTokenExpired) {
		s.fail(w, r, http.StatusUnauthorized, errors.New("unknown token"))
		return
	}
	s.fail(w, withPrincipal(r, p), http.StatusUnauthorized,
		fmt.Errorf("%w: log in again (dvfs login) or ask an admin for a new token (dvfs token create)", err))
}
