package repo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// ErrBadToken: the token is unknown.
var ErrBadToken = errors.New("unknown token")

const prefixTokens = "tok/"

// Principal is who a token speaks for.
type Principal = api.Principal

// tokenKey stores only a hash of the token, so a copy of the metadata does
// not hand out credentials.
func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return prefixTokens + hex.EncodeToString(sum[:])
}

// CreateToken makes a new token for name with role and returns it.
func (r *Repo) CreateToken(ctx context.Context, name, role string) (string, error) {
	if role != api.RoleAdmin && role != api.RoleUser {
		return "", fmt.Errorf("%w: role %q is not %q or %q", ErrInvalid, role, api.RoleAdmin, api.RoleUser)
	}
	if err := api.ValidPrincipalName(name); err != nil {
		return "", fmt.Errorf("%w: token name: %v", ErrInvalid, err)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", err
	}
	token := "dvfs_" + base64.RawURLEncoding.EncodeToString(raw[:])
	rec, err := json.Marshal(Principal{Name: name, Role: role, Created: r.now().UTC()})
	if err != nil {
		return "", err
	}
	if err := r.store.CommitMeta(ctx, blockstore.MetaOp{Key: tokenKey(token), Value: rec, Check: true}); err != nil {
		return "", err
	}
	r.log.Info("created token", "name", name, "role", role)
	return token, nil
}

// Authenticate returns the principal of a token.
func (r *Repo) Authenticate(ctx context.Context, token string) (Principal, error) {
	var p Principal
	if token == "" {
		return p, ErrBadToken
	}
	key := tokenKey(token)
	b, err := r.store.GetMeta(ctx, key)
	if errors.Is(err, blockstore.ErrNotFound) {
		return p, ErrBadToken
	}
	if err != nil {
		return p, err
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, err
	}
	// A record made before names were checked: its name is a key of
	// the metadata and a directory on workstations, so it serves no one.
	if err := api.ValidPrincipalName(p.Name); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	return p, nil
}

// HasTokens reports whether any token exists.
func (r *Repo) HasTokens(ctx context.Context) (bool, error) {
	found := false
	err := r.store.ListMeta(ctx, prefixTokens, func(string, []byte) error {
		found = true
		return errStop
	})
	if errors.Is(err, errStop) {
		err = nil
	}
	return found, err
}

var errStop = errors.New("stop")
