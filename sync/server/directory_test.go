//go:build linux

package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/ldapauth"
	"github.com/dvfs-project/dvfs/sync/ldapauth/ldaptest"
	"github.com/dvfs-project/dvfs/sync/server"
)

// directoryEnv is a server whose users log in through a real OpenLDAP:
// alice (an admin, in dvfs-admins) and bob.
func directoryEnv(t *testing.T, cfg server.Config) (*tokenEnv, *ldaptest.Server) {
	t.Helper()
	s := ldaptest.Start(t)
	s.Modify(ldaptest.UserLDIF("alice", "alice-pw") + ldaptest.UserLDIF("bob", "bob-pw"))
	s.Modify(ldaptest.GroupLDIF("dvfs-admins", "alice") + ldaptest.GroupLDIF("cs101", "alice", "bob"))
	d, err := ldapauth.New(ldapauth.Config{URL: s.URL, BindDN: ldaptest.RootDN, BindPassword: ldaptest.RootPassword,
		BaseDN: ldaptest.People, UserFilter: "(uid={user})", AdminGroup: "cn=dvfs-admins," + ldaptest.Groups})
	if err != nil {
		t.Fatal(err)
	}
	cfg.Directory = d
	return newTokenEnv(t, cfg), s
}

// postLogin sends body to the login route and returns the status.
func (e *tokenEnv) postLogin(body []byte) int {
	e.t.Helper()
	resp, err := http.Post(e.url+api.PathLogin, "application/json", bytes.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func TestLogin(t *testing.T) {
	e, _ := directoryEnv(t, server.Config{LoginLifetime: time.Hour})
	ctx := context.Background()
	res, err := e.client("").Login(ctx, "alice", "alice-pw")
	if err != nil || res.Role != api.RoleAdmin || res.Expires.IsZero() {
		t.Fatalf("alice's login: %v %+v", err, res)
	}
	who, err := e.client(res.Token).WhoAmI(ctx)
	if err != nil || who.Role != api.RoleAdmin || who.Source != api.SourceDirectory || strings.Join(who.Groups, ",") != "cs101,dvfs-admins" {
		t.Fatalf("alice: %v %+v", err, who)
	}
	res, err = e.client("").Login(ctx, "bob", "bob-pw")
	if err != nil || res.Role != api.RoleUser {
		t.Fatalf("bob's login: %v %+v", err, res)
	}
	_, err = e.client("").Login(ctx, "bob", "alice-pw")
	e.refused(err, http.StatusUnauthorized, "login refused for bob", "bob")
	if len(e.log.lines(`msg="login refused"`, "user=bob", "wrong password")) == 0 {
		t.Fatalf("no log line says why bob was refused:\n%s", e.log)
	}
}

func TestLoginValidated(t *testing.T) {
	e, _ := directoryEnv(t, server.Config{})
	login := func(user, pw string) []byte {
		b, _ := json.Marshal(api.LoginRequest{User: user, Password: pw})
		return b
	}
	for name, c := range map[string]struct {
		body []byte
		want int
	}{
		"empty password":     {login("bob", ""), http.StatusBadRequest},
		"long password":      {login("bob", strings.Repeat("x", api.MaxPasswordLen+1)), http.StatusBadRequest},
		"filter in the name": {login("*)(uid=*", "x"), http.StatusBadRequest},
		"long name":          {login(strings.Repeat("b", api.MaxPrincipalNameLen+1), "x"), http.StatusBadRequest},
		"not JSON":           {[]byte("user=bob"), http.StatusBadRequest},
		"too large":          {bytes.Repeat([]byte(" "), api.MaxLoginBytes+1), http.StatusRequestEntityTooLarge},
	} {
		if got := e.postLogin(c.body); got != c.want {
			t.Errorf("%s: %d, want %d", name, got, c.want)
		}
	}
	noDir := newTokenEnv(t, server.Config{})
	if got := noDir.postLogin(login("bob", "bob-pw")); got != http.StatusNotImplemented {
		t.Errorf("a login to a server without a directory: %d, want 501", got)
	}
}

// After a few wrong passwords, a user name is refused without asking the
// directory, even with the right password.
func TestLoginFailuresLimited(t *testing.T) {
	e, _ := directoryEnv(t, server.Config{})
	ctx := context.Background()
	c := e.client("")
	for range 5 {
		_, err := c.Login(ctx, "bob", "guess")
		e.refused(err, http.StatusUnauthorized, "login refused for bob", "bob")
	}
	_, err := c.Login(ctx, "bob", "bob-pw")
	e.refused(err, http.StatusTooManyRequests, "too many failed logins for bob", "bob")
}

// A directory token follows the directory: out of the admin group, a user;
// disabled (here: gone), refused; the directory unreachable, its last
// answer stands for DirectoryGrace, then 503.
func TestDirectoryRecheck(t *testing.T) {
	e, dir := directoryEnv(t, server.Config{DirectoryRecheck: 200 * time.Millisecond, DirectoryGrace: time.Nanosecond})
	ctx := context.Background()
	res, err := e.client("").Login(ctx, "alice", "alice-pw")
	if err != nil {
		t.Fatal(err)
	}
	alice := e.client(res.Token)
	if _, err := alice.Tokens(ctx, "bob", false); err != nil {
		t.Fatalf("alice (admin) listing bob's tokens: %v", err)
	}
	dir.Modify(ldaptest.MemberLDIF("dvfs-admins", "bob", true) + ldaptest.MemberLDIF("dvfs-admins", "alice", false))
	until(t, "alice is no admin", func() bool {
		_, err := alice.Tokens(ctx, "bob", false)
		return statusOf(err) == http.StatusForbidden
	})
	dir.Modify("dn: uid=alice," + ldaptest.People + "\nchangetype: delete\n\n")
	until(t, "alice, deleted, is refused", func() bool {
		_, err := alice.WhoAmI(ctx)
		return statusOf(err) == http.StatusUnauthorized && strings.Contains(err.Error(), "no user alice")
	})
	if len(e.log.lines("request failed", "status=401", "user=alice", "no user alice")) == 0 {
		t.Fatalf("no log line names alice:\n%s", e.log)
	}

	res, err = e.client("").Login(ctx, "bob", "bob-pw")
	if err != nil {
		t.Fatal(err)
	}
	bob := e.client(res.Token)
	dir.Stop()
	until(t, "bob's requests fail while the directory is away", func() bool {
		_, err := bob.WhoAmI(ctx)
		return statusOf(err) == http.StatusServiceUnavailable
	})
}

// Within the grace, the directory's last answer stands.
func TestDirectoryGrace(t *testing.T) {
	e, dir := directoryEnv(t, server.Config{DirectoryRecheck: 100 * time.Millisecond, DirectoryGrace: time.Hour})
	ctx := context.Background()
	res, err := e.client("").Login(ctx, "bob", "bob-pw")
	if err != nil {
		t.Fatal(err)
	}
	dir.Stop()
	time.Sleep(300 * time.Millisecond) // past the recheck period
	bob := e.client(res.Token)
	if who, err := bob.WhoAmI(ctx); err != nil || who.Name != "bob" {
		t.Fatalf("bob with the directory away, within the grace: %v %+v", err, who)
	}
	if len(e.log.lines("directory unreachable", "user=bob")) == 0 {
		t.Fatalf("no warning that the directory is away:\n%s", e.log)
	}
}

// until polls cond for up to 30s.
func until(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("not after 30s: %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
