package server_test

import (
	"context"
	"crypto/ed25519"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
)

// tokenEnv is a server whose clock the test moves, and its log.
type tokenEnv struct {
	t     *testing.T
	url   string
	repo  *repo.Repo
	admin *client.Client
	now   atomic.Int64 // unix nanoseconds
	log   *logBuffer
}

func newTokenEnv(t *testing.T, cfg server.Config) *tokenEnv {
	t.Helper()
	e := &tokenEnv{t: t, log: &logBuffer{}}
	e.now.Store(time.Date(2026, 12, 1, 8, 0, 0, 0, time.UTC).UnixNano())
	_, key, _ := ed25519.GenerateKey(nil)
	r, err := repo.New(repo.Config{Store: memstore.New(), Key: key, Now: func() time.Time { return time.Unix(0, e.now.Load()) }})
	if err != nil {
		t.Fatal(err)
	}
	e.repo = r
	admin, err := r.CreateToken(context.Background(), "admin", api.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	cfg.Repo = r
	cfg.Logger = slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := httptest.NewServer(server.New(cfg))
	t.Cleanup(srv.Close)
	e.url = srv.URL
	e.admin = e.client(admin)
	return e
}

func (e *tokenEnv) client(token string) *client.Client {
	e.t.Helper()
	c, err := client.New(client.Config{Server: e.url, Token: token})
	if err != nil {
		e.t.Fatal(err)
	}
	return c
}

func (e *tokenEnv) advance(d time.Duration) { e.now.Add(int64(d)) }

// refused fails unless err is status with a message holding want, and the
// server logged a refusal naming user.
func (e *tokenEnv) refused(err error, status int, want, user string) {
	e.t.Helper()
	if statusOf(err) != status || !strings.Contains(err.Error(), want) {
		e.t.Fatalf("got %v, want %d saying %q", err, status, want)
	}
	if len(e.log.lines("request failed", "user="+user, want)) == 0 {
		e.t.Fatalf("no log line names %s:\n%s", user, e.log)
	}
}

func TestTokenListRevokeExpire(t *testing.T) {
	e := newTokenEnv(t, server.Config{})
	ctx := context.Background()
	res, err := e.admin.NewToken(ctx, api.TokenRequest{Name: "alice", Role: api.RoleUser, ExpiresIn: 3600})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ID) != api.TokenIDLen || res.Expires.IsZero() {
		t.Fatalf("token response %+v", res)
	}
	alice := e.client(res.Token)
	who, err := alice.WhoAmI(ctx)
	if err != nil || who.Name != "alice" || who.TokenID != res.ID || !who.Expires.Equal(res.Expires) {
		t.Fatalf("whoami: %v %+v", err, who)
	}
	bobRes, err := e.admin.CreateToken(ctx, "bob", api.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	bob := e.client(bobRes.Token)

	// A user lists their own tokens only; an admin everyone's.
	mine, err := alice.Tokens(ctx, "", false)
	if err != nil || len(mine) != 1 || mine[0].TokenID != res.ID {
		t.Fatalf("alice's list: %v %+v", err, mine)
	}
	_, err = alice.Tokens(ctx, "bob", false)
	e.refused(err, http.StatusForbidden, "only their own tokens", "alice")
	all, err := e.admin.Tokens(ctx, "", false)
	if err != nil || len(all) != 3 {
		t.Fatalf("admin's list: %v %+v", err, all)
	}
	// Nobody revokes another's token; to them it does not exist.
	_, err = alice.RevokeToken(ctx, bobRes.ID)
	if statusOf(err) != http.StatusNotFound {
		t.Fatalf("alice revoking bob's token: %v", err)
	}
	if _, err := bob.WhoAmI(ctx); err != nil {
		t.Fatal(err)
	}

	// Revoked by an admin: refused from the next request on.
	if _, err := e.admin.RevokeToken(ctx, bobRes.ID); err != nil {
		t.Fatal(err)
	}
	_, err = bob.WhoAmI(ctx)
	e.refused(err, http.StatusUnauthorized, "revoked", "bob")
	_, err = bob.Clones(ctx)
	e.refused(err, http.StatusUnauthorized, "revoked", "bob")

	// Expired: refused with the time it expired.
	e.advance(time.Hour)
	_, err = alice.WhoAmI(ctx)
	e.refused(err, http.StatusUnauthorized, "expired", "alice")
	if !strings.Contains(err.Error(), res.Expires.UTC().Format(time.RFC3339)) {
		t.Fatalf("the refusal does not say when: %v", err)
	}
	listed, err := e.admin.Tokens(ctx, "", true)
	if err != nil || len(listed) != 3 {
		t.Fatalf("admin's list with --all: %v %+v", err, listed)
	}
	active, err := e.admin.Tokens(ctx, "", false)
	if err != nil || len(active) != 1 || active[0].Name != "admin" {
		t.Fatalf("active tokens: %v %+v", err, active)
	}
}

func TestTokenRequestsValidated(t *testing.T) {
	e := newTokenEnv(t, server.Config{})
	ctx := context.Background()
	for _, req := range []api.TokenRequest{
		{Name: "alice", Role: api.RoleUser, ExpiresIn: -1},
		{Name: "alice", Role: api.RoleUser, ExpiresIn: int64(api.MaxTokenLifetime/time.Second) + 1},
		{Name: "alice/../x", Role: api.RoleUser},
		{Name: "alice", Role: "root"},
	} {
		if _, err := e.admin.NewToken(ctx, req); statusOf(err) != http.StatusBadRequest {
			t.Errorf("%+v: %v, want 400", req, err)
		}
	}
	for _, path := range []string{"/v1/tokens/xyz", "/v1/tokens/" + strings.Repeat("A", api.TokenIDLen), "/v1/tokens/..%2f..%2fx"} {
		if code := e.status(http.MethodDelete, path, ""); code != http.StatusUnauthorized {
			t.Errorf("DELETE %s without a token: %d", path, code)
		}
	}
	res, err := e.admin.CreateToken(ctx, "alice", api.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{"user=..%2Fx", "user=" + strings.Repeat("a", api.MaxPrincipalNameLen+1)} {
		if code := e.status(http.MethodGet, api.PathTokenList+"?"+q, res.Token); code != http.StatusBadRequest {
			t.Errorf("GET ?%s: %d, want 400", q, code)
		}
	}
	if code := e.status(http.MethodDelete, "/v1/tokens/xyz", res.Token); code != http.StatusBadRequest {
		t.Errorf("DELETE a malformed ID: %d, want 400", code)
	}
}

// status sends a request without a body and returns its status.
func (e *tokenEnv) status(method, path, token string) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.url+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
