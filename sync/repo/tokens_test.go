package repo

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

func TestTokenExpiresAndRevokes(t *testing.T) {
	r, _, now := newRepo(t)
	ctx := context.Background()
	tok, info, err := r.IssueToken(ctx, TokenSpec{Name: "alice", Role: api.RoleUser, Lifetime: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if len(info.TokenID) != api.TokenIDLen || strings.Contains(tok, info.TokenID) || !info.Expires.Equal(now.Add(time.Hour)) {
		t.Fatalf("info %+v of %s", info, tok)
	}
	p, err := r.Authenticate(ctx, tok)
	if err != nil || p.Name != "alice" || p.TokenID != info.TokenID || p.Source != api.SourceLocal {
		t.Fatalf("authenticate: %v %+v", err, p)
	}
	*now = now.Add(time.Hour)
	p, err = r.Authenticate(ctx, tok)
	if !errors.Is(err, ErrTokenExpired) || !errors.Is(err, ErrBadToken) || p.Name != "alice" {
		t.Fatalf("an expired token: %v %+v", err, p)
	}
	if !strings.Contains(err.Error(), "alice") || !strings.Contains(err.Error(), "expired") {
		t.Fatalf("the refusal does not say whose token expired: %v", err)
	}

	bob, binfo, err := r.IssueToken(ctx, TokenSpec{Name: "bob", Role: api.RoleUser})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := r.RevokeToken(ctx, binfo.TokenID, "alice"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("alice revoked bob's token: %v", err)
	}
	if _, err := r.RevokeToken(ctx, binfo.TokenID, "bob"); err != nil {
		t.Fatal(err)
	}
	p, err = r.Authenticate(ctx, bob)
	if !errors.Is(err, ErrTokenRevoked) || p.Name != "bob" {
		t.Fatalf("a revoked token: %v %+v", err, p)
	}
	if _, err := r.RevokeToken(ctx, strings.Repeat("0", api.TokenIDLen), ""); !errors.Is(err, ErrNotFound) {
		t.Fatalf("revoking an unknown ID: %v", err)
	}
	for _, id := range []string{"", "abc", strings.Repeat("G", api.TokenIDLen), "../../../../../..", binfo.TokenID + "0"} {
		if _, err := r.RevokeToken(ctx, id, ""); !errors.Is(err, ErrInvalid) {
			t.Errorf("revoking ID %q: %v, want ErrInvalid", id, err)
		}
	}

	active, err := r.ListTokens(ctx, "", false)
	if err != nil || len(active) != 0 {
		t.Fatalf("active tokens: %v %+v", err, active)
	}
	all, err := r.ListTokens(ctx, "", true)
	if err != nil || len(all) != 2 {
		t.Fatalf("all tokens: %v %+v", err, all)
	}
	mine, err := r.ListTokens(ctx, "bob", true)
	if err != nil || len(mine) != 1 || mine[0].TokenID != binfo.TokenID || mine[0].Revoked.IsZero() {
		t.Fatalf("bob's tokens: %v %+v", err, mine)
	}
	if _, err := r.ListTokens(ctx, "../x", true); !errors.Is(err, ErrInvalid) {
		t.Fatalf("listing a bad name: %v", err)
	}
}

func TestTokenSpecValidated(t *testing.T) {
	r, _, _ := newRepo(t)
	ctx := context.Background()
	for _, spec := range []TokenSpec{
		{Name: "alice", Role: "root"},
		{Name: "../alice", Role: api.RoleUser},
		{Name: "alice", Role: api.RoleUser, Lifetime: -time.Second},
		{Name: "alice", Role: api.RoleUser, Lifetime: api.MaxTokenLifetime + 1},
		{Name: "alice", Role: api.RoleUser, Source: "kerberos"},
	} {
		if _, _, err := r.IssueToken(ctx, spec); !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: %v, want ErrInvalid", spec, err)
		}
	}
}

// A record stored before tokens had an ID, an expiry and a source still
// signs in, as a local token that never expires, and can be revoked.
func TestOldTokenRecordReadable(t *testing.T) {
	r, st, now := newRepo(t)
	ctx := context.Background()
	const tok = "dvfs_old-token"
	old := `{"name":"carol","role":"admin","created":"2025-01-02T03:04:05Z"}`
	if err := st.CommitMeta(ctx, blockstore.MetaOp{Key: tokenKey(tok), Value: []byte(old)}); err != nil {
		t.Fatal(err)
	}
	*now = now.Add(5 * 365 * 24 * time.Hour)
	p, err := r.Authenticate(ctx, tok)
	if err != nil || p.Name != "carol" || p.Role != api.RoleAdmin || !p.Expires.IsZero() || p.Source != api.SourceLocal {
		t.Fatalf("old record: %v %+v", err, p)
	}
	list, err := r.ListTokens(ctx, "carol", false)
	if err != nil || len(list) != 1 || list[0].TokenID != p.TokenID {
		t.Fatalf("list: %v %+v", err, list)
	}
	if _, err := r.RevokeToken(ctx, p.TokenID, ""); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Authenticate(ctx, tok); !errors.Is(err, ErrTokenRevoked) {
		t.Fatalf("after revoking: %v", err)
	}
}

func TestPruneTokens(t *testing.T) {
	r, _, now := newRepo(t)
	ctx := context.Background()
	issue := func(name string, life time.Duration) string {
		_, info, err := r.IssueToken(ctx, TokenSpec{Name: name, Role: api.RoleUser, Lifetime: life})
		if err != nil {
			t.Fatal(err)
		}
		return info.TokenID
	}
	issue("forever", 0)
	issue("day", 24*time.Hour)
	revoked := issue("revoked", 0)
	issue("year", 365*24*time.Hour)
	if _, err := r.RevokeToken(ctx, revoked, ""); err != nil {
		t.Fatal(err)
	}
	if n, err := r.PruneTokens(ctx); err != nil || n != 0 {
		t.Fatalf("pruned %d, %v; want none yet", n, err)
	}
	*now = now.Add(TokenRecordKeep + 2*24*time.Hour)
	if n, err := r.PruneTokens(ctx); err != nil || n != 2 {
		t.Fatalf("pruned %d, %v; want the expired and the revoked", n, err)
	}
	all, err := r.ListTokens(ctx, "", true)
	if err != nil || len(all) != 2 || all[0].Name == "day" || all[1].Name == "day" || all[0].Name == "revoked" || all[1].Name == "revoked" {
		t.Fatalf("left: %v %+v", err, all)
	}
}

// FuzzTokenRecord: whatever a token's stored record holds, Authenticate
// neither panics nor lets in a principal with a bad name, role or source.
func FuzzTokenRecord(f *testing.F) {
	f.Add([]byte(`{"name":"carol","role":"admin","created":"2025-01-02T03:04:05Z"}`))
	f.Add([]byte(`{"name":"bob","role":"user","created":"2026-11-22T08:00:00Z","expires":"2026-11-23T08:00:00Z","source":"directory"}`))
	f.Add([]byte(`{"name":"bob","role":"user","revoked":"2026-11-22T07:00:00Z"}`))
	f.Add([]byte(`{"name":"../x","role":"user"}`))
	f.Add([]byte(`{"name":"bob","role":"root"}`))
	f.Add([]byte(`{"name":"bob","role":"user","source":"kerberos"}`))
	f.Add([]byte(`[]`))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, rec []byte) {
		r, st, _ := newRepo(t)
		ctx := context.Background()
		const tok = "dvfs_fuzz"
		if err := st.CommitMeta(ctx, blockstore.MetaOp{Key: tokenKey(tok), Value: rec}); err != nil {
			t.Fatal(err)
		}
		p, err := r.Authenticate(ctx, tok)
		if err != nil {
			return
		}
		if api.ValidPrincipalName(p.Name) != nil || (p.Role != api.RoleAdmin && p.Role != api.RoleUser) ||
			(p.Source != api.SourceLocal && p.Source != api.SourceDirectory) || len(p.TokenID) != api.TokenIDLen {
			t.Fatalf("record %q let in %+v", rec, p)
		}
		if _, err := r.ListTokens(ctx, "", true); err != nil {
			t.Fatalf("a record Authenticate takes does not list: %v", err)
		}
	})
}
