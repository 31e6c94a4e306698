//go:build linux

package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/sync/ldapauth/ldaptest"
)

// ldapUser runs dvfs commands as a directory user: no DVFS_TOKEN, the
// token in the file dvfs login writes.
type ldapUser struct {
	t         *testing.T
	s         *serverProc
	name      string
	tokenFile string
}

func (s *serverProc) ldapUser(name string) *ldapUser {
	return &ldapUser{t: s.t, s: s, name: name, tokenFile: filepath.Join(s.t.TempDir(), name+".token")}
}

// try runs dvfs args with stdin and returns its combined output.
func (u *ldapUser) try(stdin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, dvfsBin, args...)
	cmd.Env = append(os.Environ(), "DVFS_SERVER="+u.s.url, "DVFS_TOKEN=", "DVFS_TOKEN_FILE="+u.tokenFile)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (u *ldapUser) dvfs(args ...string) string {
	u.t.Helper()
	out, err := u.try("", args...)
	if err != nil {
		u.t.Fatalf("%s: dvfs %s: %v\n%s", u.name, strings.Join(args, " "), err, out)
	}
	return out
}

func (u *ldapUser) login(password string) {
	u.t.Helper()
	out, err := u.try(password+"\n", "login", "--user", u.name, "--password-stdin")
	if err != nil {
		u.t.Fatalf("%s: dvfs login: %v\n%s", u.name, err, out)
	}
	st, err := os.Stat(u.tokenFile)
	if err != nil || st.Mode().Perm() != 0o600 {
		u.t.Fatalf("%s's token file: %v, mode %v", u.name, err, st.Mode())
	}
}

// eventually runs dvfs args until check holds of its output and error;
// the server asks the directory again within --ldap-recheck.
func (u *ldapUser) eventually(what string, check func(out string, err error) bool, args ...string) string {
	u.t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		out, err := u.try("", args...)
		if check(out, err) {
			return out
		}
		if time.Now().After(deadline) {
			u.t.Fatalf("%s: dvfs %s: still %v after 30s, want %s:\n%s", u.name, strings.Join(args, " "), err, what, out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestLDAPLogin runs dvfs serve against a real OpenLDAP (over StartTLS,
// trusting the test's CA): users log in
// with their directory password, act with the token dvfs login stored,
// an admin is whoever is in the admin group (and stops being one when
// taken out), groups from the directory share clones, a disabled user's
// token stops working, a wrong password is refused and logged by name,
// and a revoked token is refused.
func TestLDAPLogin(t *testing.T) {
	t.Parallel()
	dir := ldaptest.StartTLS(t)
	dir.Modify(ldaptest.UserLDIF("alice", "alice-pw") + ldaptest.UserLDIF("bob", "bob-pw") + ldaptest.UserLDIF("carol", "carol-pw"))
	dir.Modify(ldaptest.GroupLDIF("dvfs-admins", "alice", "carol") + ldaptest.GroupLDIF("cs101", "alice", "bob"))
	tmp := t.TempDir()
	pwFile := filepath.Join(tmp, "ldap.password")
	os.WriteFile(pwFile, []byte(ldaptest.RootPassword+"\n"), 0o600)
	config := filepath.Join(tmp, "dvfs.toml")
	os.WriteFile(config, []byte(fmt.Sprintf(`[ldap]
url = %q
start-tls = true
ca-cert = %q
bind-dn = %q
bind-password-file = %q
base-dn = %q
user-filter = "(&(objectClass=inetOrgPerson)(uid={user}))"
disabled-filter = "(employeeType=disabled)"
admin-group = "cn=dvfs-admins,%s"
recheck = "1s"
token-expires = "12h"
`, dir.URL, dir.CACert, ldaptest.RootDN, pwFile, ldaptest.People, ldaptest.Groups)), 0o600)
	s := startServerAt(t, filepath.Join(tmp, "data"), "127.0.0.1:0", "--config", config)
	publishRandom(t, s, "xp", 1<<20, 1)

	bob, alice := s.ldapUser("bob"), s.ldapUser("alice")
	bob.login("bob-pw")
	// Acting as bob: his clone, his tokens, and no more.
	bob.dvfs("clone", "create", "--template", "xp", "lab1")
	if out := bob.dvfs("clone", "list"); !strings.Contains(out, "lab1") {
		t.Fatalf("bob's clones:\n%s", out)
	}
	out := bob.dvfs("token", "list")
	if !regexp.MustCompile(`(?m)^[0-9a-f]{16}\s+bob\s+user\s+directory\s`).MatchString(out) || strings.Contains(out, "admin ") {
		t.Fatalf("bob's tokens:\n%s", out)
	}
	if out, err := bob.try("", "clone", "list", "--all"); err == nil || !strings.Contains(out, "403") {
		t.Fatalf("bob listing every clone: %v\n%s", err, out)
	}
	// The directory's groups are dvfs groups: bob shares with cs101.
	bob.dvfs("clone", "share", "lab1", "--group", "cs101")

	// alice is in dvfs-admins: an admin.
	alice.login("alice-pw")
	if out := alice.dvfs("clone", "list", "--all"); !strings.Contains(out, "lab1") {
		t.Fatalf("alice (admin) listing every clone:\n%s", out)
	}
	if out := alice.dvfs("clone", "list", "--shared"); !strings.Contains(out, "lab1") {
		t.Fatalf("alice (in cs101) listing clones shared with her:\n%s", out)
	}
	// Out of the group: no longer an admin, within --ldap-recheck.
	dir.Modify(ldaptest.MemberLDIF("dvfs-admins", "alice", false))
	alice.eventually("a refusal (403)", func(out string, err error) bool {
		return err != nil && strings.Contains(out, "403")
	}, "clone", "list", "--all")

	// A wrong password: refused, and the server's log names who.
	if out, err := bob.try("not-bobs\n", "login", "--user", "bob", "--password-stdin"); err == nil || !strings.Contains(out, "login refused for bob") {
		t.Fatalf("a wrong password: %v\n%s", err, out)
	}
	if !s.log.waitFor(10*time.Second, func(log string) bool {
		return regexp.MustCompile(`msg="login refused" user=bob .*reason="wrong password`).MatchString(log)
	}) {
		t.Fatalf("no log line names bob's refused login:\n%s", s.log)
	}
	bob.dvfs("clone", "list") // his stored token still works

	// A revoked token: refused, named in the log.
	carol := s.ldapUser("carol")
	carol.login("carol-pw")
	id := regexp.MustCompile(`(?m)^([0-9a-f]{16})\s+carol\s`).FindStringSubmatch(s.dvfs("token", "list", "--user", "carol"))
	if id == nil {
		t.Fatalf("no token of carol's in the list:\n%s", s.dvfs("token", "list", "--all"))
	}
	s.dvfs("token", "revoke", id[1])
	if out, err := carol.try("", "clone", "list"); err == nil || !strings.Contains(out, "revoked") {
		t.Fatalf("carol's revoked token: %v\n%s", err, out)
	}
	if !s.log.waitFor(10*time.Second, func(log string) bool {
		return regexp.MustCompile(`msg="request failed".* status=401 .*user=carol .*revoked`).MatchString(log)
	}) {
		t.Fatalf("no log line names carol's revoked token:\n%s", s.log)
	}

	// Every token of a user at once.
	if out := s.dvfs("token", "revoke", "--user", "alice"); !strings.Contains(out, "(alice)") {
		t.Fatalf("revoking alice's tokens:\n%s", out)
	}
	if out, err := alice.try("", "token", "list"); err == nil || !strings.Contains(out, "revoked") {
		t.Fatalf("alice's revoked token: %v\n%s", err, out)
	}

	// Disabled in the directory: bob's token stops working.
	dir.Modify("dn: uid=bob," + ldaptest.People + "\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\n")
	out = bob.eventually("a refusal (401)", func(out string, err error) bool {
		return err != nil && strings.Contains(out, "401")
	}, "clone", "list")
	if !strings.Contains(out, "bob is disabled") {
		t.Fatalf("the refusal does not say why:\n%s", out)
	}
	if !s.log.waitFor(10*time.Second, func(log string) bool {
		return regexp.MustCompile(`msg="request failed".* status=401 .*user=bob .*disabled`).MatchString(log)
	}) {
		t.Fatalf("no log line names bob's refused token:\n%s", s.log)
	}
	if out, err := bob.try("bob-pw\n", "login", "--user", "bob", "--password-stdin"); err == nil {
		t.Fatalf("a disabled user logged in:\n%s", out)
	}
}
