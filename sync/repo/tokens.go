package repo

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// ErrBadToken: the token is unknown, revoked or expired.
var ErrBadToken = errors.New("unknown token")

// The refusals of a known token; both wrap ErrBadToken.
var (
	ErrTokenRevoked error = tokenRefusal("revoked")
	ErrTokenExpired error = tokenRefusal("expired")
)

type tokenRefusal string

func (e tokenRefusal) Error() string { return string(e) }
func (e tokenRefusal) Unwrap() error { return ErrBadToken }

const prefixTokens = "tok/"

// Principal is who a token speaks for.
type Principal = api.Principal

// A token's record, under tokenKey, is an api.TokenInfo in JSON with
// TokenID empty (the key holds it). Records stored before tokens had an
// ID, an expiry and a source hold only name, role and created: they read
// as local tokens that never expire, so nothing needs migrating.

// tokenKey stores only a hash of the token, so a copy of the metadata does
// not hand out credentials. Its first api.TokenIDLen hex digits are the
// token's ID: they name the token in lists and revocations without being
// any use to sign in with.
func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return prefixTokens + hex.EncodeToString(sum[:])
}

// TokenSpec describes a token to make.
type TokenSpec struct {
	// Name and Role are the principal it speaks for.
	Name, Role string
	// Lifetime is how long it is good for; 0: it never expires.
	Lifetime time.Duration
	// Source is api.SourceLocal ("" too) or api.SourceDirectory.
	Source string
}

// CreateToken makes a new local token for name with role that never
// expires, and returns it.
func (r *Repo) CreateToken(ctx context.Context, name, role string) (string, error) {
	token, _, err := r.IssueToken(ctx, TokenSpec{Name: name, Role: role})
	return token, err
}

// IssueToken makes a new token as spec says and returns it with its
// record.
func (r *Repo) IssueToken(ctx context.Context, spec TokenSpec) (string, api.TokenInfo, error) {
	var info api.TokenInfo
	if spec.Role != api.RoleAdmin && spec.Role != api.RoleUser {
		return "", info, fmt.Errorf("%w: role %q is not %q or %q", ErrInvalid, spec.Role, api.RoleAdmin, api.RoleUser)
	}
	if err := api.ValidPrincipalName(spec.Name); err != nil {
		return "", info, fmt.Errorf("%w: token name: %v", ErrInvalid, err)
	}
	if spec.Lifetime < 0 || spec.Lifetime > api.MaxTokenLifetime {
		return "", info, fmt.Errorf("%w: a token's lifetime is 0 (never expires) up to %v, not %v", ErrInvalid, api.MaxTokenLifetime, spec.Lifetime)
	}
	switch spec.Source {
	case "":
		spec.Source = api.SourceLocal
	case api.SourceLocal, api.SourceDirectory:
	default:
		return "", info, fmt.Errorf("%w: token source %q", ErrInvalid, spec.Source)
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		return "", info, err
	}
	token := "dvfs_" + base64.RawURLEncoding.EncodeToString(raw[:])
	now := r.now().UTC().Truncate(time.Second)
	info.Name, info.Role, info.Created, info.Source = spec.Name, spec.Role, now, spec.Source
	if spec.Lifetime > 0 {
		info.Expires = now.Add(spec.Lifetime)
	}
	rec, err := json.Marshal(info)
	if err != nil {
		return "", info, err
	}
	key := tokenKey(token)
	if err := r.store.CommitMeta(ctx, blockstore.MetaOp{Key: key, Value: rec, Check: true}); err != nil {
		return "", info, err
	}
	info.TokenID = tokenID(key)
	r.log.Info("created token", "user", spec.Name, "role", spec.Role, "token_id", info.TokenID, "source", spec.Source, "expires", info.Expires)
	return token, info, nil
}

func tokenID(key string) string {
	return strings.TrimPrefix(key, prefixTokens)[:api.TokenIDLen]
}

// decodeToken reads the record stored under key.
func decodeToken(key string, b []byte) (api.TokenInfo, error) {
	var info api.TokenInfo
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("token record %s: %w", key, err)
	}
	info.TokenID = tokenID(key)
	if info.Source == "" {
		info.Source = api.SourceLocal
	}
	return info, nil
}

// validRecord checks what a stored record says beyond its name: a record
// with a role or a source this server does not know speaks for no one
// (an unknown source would escape the directory's re-check).
func validRecord(info api.TokenInfo) error {
	if info.Role != api.RoleAdmin && info.Role != api.RoleUser {
		return fmt.Errorf("role %q", info.Role)
	}
	if info.Source != api.SourceLocal && info.Source != api.SourceDirectory {
		return fmt.Errorf("source %q", info.Source)
	}
	return nil
}

// Authenticate returns the principal of a token. A revoked or expired
// token is refused with ErrTokenRevoked or ErrTokenExpired, and the
// principal it spoke for, so that the refusal can name who. Nothing is
// cached: a revocation holds from the next request on.
func (r *Repo) Authenticate(ctx context.Context, token string) (Principal, error) {
	if token == "" {
		return Principal{}, ErrBadToken
	}
	key := tokenKey(token)
	b, err := r.store.GetMeta(ctx, key)
	if errors.Is(err, blockstore.ErrNotFound) {
		return Principal{}, ErrBadToken
	}
	if err != nil {
		return Principal{}, err
	}
	info, err := decodeToken(key, b)
	if err != nil {
		return Principal{}, err
	}
	// A record made before names were checked: its name is a key of
	// the metadata and a directory on workstations, so it serves no one.
	if err := api.ValidPrincipalName(info.Name); err != nil {
		return Principal{}, fmt.Errorf("%w: %v", ErrBadToken, err)
	}
	if err := validRecord(info); err != nil {
		return Principal{}, fmt.Errorf("%w: token %s: %v", ErrBadToken, info.TokenID, err)
	}
	p := info.Principal
	switch {
	case !info.Revoked.IsZero():
		return p, fmt.Errorf("token %s of %s %w on %s", p.TokenID, p.Name, ErrTokenRevoked, info.Revoked.Format(time.RFC3339))
	case !info.Expires.IsZero() && !r.now().Before(info.Expires):
		return p, fmt.Errorf("token %s of %s %w on %s", p.TokenID, p.Name, ErrTokenExpired, info.Expires.Format(time.RFC3339))
	}
	return p, nil
}

// ListTokens returns the records of user's tokens (every user's when
// user is ""), newest first; revoked and expired ones only with all.
func (r *Repo) ListTokens(ctx context.Context, user string, all bool) ([]api.TokenInfo, error) {
	if user != "" {
		if err := api.ValidPrincipalName(user); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalid, err)
		}
	}
	now := r.now()
	var out []api.TokenInfo
	err := r.store.ListMeta(ctx, prefixTokens, func(key string, b []byte) error {
		info, err := decodeToken(key, b)
		if err != nil {
			return err
		}
		if user != "" && info.Name != user {
			return nil
		}
		if !all && (!info.Revoked.IsZero() || !info.Expires.IsZero() && !now.Before(info.Expires)) {
			return nil
		}
		out = append(out, info)
		return nil
	})
	slices.SortStableFunc(out, func(a, b api.TokenInfo) int { return b.Created.Compare(a.Created) })
	return out, err
}

// RevokeToken revokes the token whose ID is id and returns its record.
// The record stays (marked revoked), so that a refused request names who
// it was for. ErrNotFound: no such token, or owner is not "" and the
// token is another user's.
func (r *Repo) RevokeToken(ctx context.Context, id, owner string) (api.TokenInfo, error) {
	var info api.TokenInfo
	if err := api.ValidTokenID(id); err != nil {
		return info, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	var key string
	var old []byte
	err := r.store.ListMeta(ctx, prefixTokens+id, func(k string, b []byte) error {
		if key != "" {
			return fmt.Errorf("%w: two tokens have the ID %s", ErrConflictingID, id)
		}
		key, old = k, bytes.Clone(b)
		return nil
	})
	if err != nil {
		return info, err
	}
	if key == "" {
		return info, fmt.Errorf("%w: token %s", ErrNotFound, id)
	}
	if info, err = decodeToken(key, old); err != nil {
		return info, err
	}
	if owner != "" && info.Name != owner {
		return api.TokenInfo{}, fmt.Errorf("%w: token %s", ErrNotFound, id)
	}
	if !info.Revoked.IsZero() {
		return info, nil
	}
	info.Revoked = r.now().UTC().Truncate(time.Second)
	stored := info
	stored.TokenID = ""
	rec, err := json.Marshal(stored)
	if err != nil {
		return info, err
	}
	if err := r.store.CommitMeta(ctx, blockstore.MetaOp{Key: key, Value: rec, Check: true, Old: old}); err != nil {
		return info, err
	}
	r.log.Info("revoked token", "user", info.Name, "token_id", id)
	return info, nil
}

// ErrConflictingID: two tokens share an ID (2^-64 odds a pair); revoke
// cannot tell which is meant.
var ErrConflictingID = errors.New("ambiguous token ID")

// TokenRecordKeep is how long the record of a revoked or expired token is
// kept: refusals name whose token it was, and dvfs token list --all shows
// it, for that long.
const TokenRecordKeep = 30 * 24 * time.Hour

// PruneTokens deletes the records of tokens revoked or expired more than
// TokenRecordKeep ago (logins make a token each, so they pile up), and
// returns how many it deleted.
func (r *Repo) PruneTokens(ctx context.Context) (int, error) {
	cutoff := r.now().Add(-TokenRecordKeep)
	var ops []blockstore.MetaOp
	err := r.store.ListMeta(ctx, prefixTokens, func(key string, b []byte) error {
		info, err := decodeToken(key, b)
		if err != nil {
			return nil // not ours to judge; Authenticate refuses it
		}
		ended := info.Revoked
		if ended.IsZero() || !info.Expires.IsZero() && info.Expires.Before(ended) {
			ended = info.Expires
		}
		if !ended.IsZero() && ended.Before(cutoff) {
			ops = append(ops, blockstore.MetaOp{Key: key, Check: true, Old: bytes.Clone(b)})
		}
		return nil
	})
	if err != nil || len(ops) == 0 {
		return 0, err
	}
	// A record changed since (revoked again) keeps its place until next
	// time: the Check fails the batch, which is tried one by one.
	if err := r.store.CommitMeta(ctx, ops...); err != nil {
		n := 0
		for _, op := range ops {
			if r.store.CommitMeta(ctx, op) == nil {
				n++
			}
		}
		return n, nil
	}
	r.log.Info("pruned old token records", "deleted", len(ops))
	return len(ops), nil
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
