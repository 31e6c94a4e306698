// Package ldaptest runs a real OpenLDAP server (Debian's slapd) for tests:
// its own process on a loopback port, with a configuration and an mdb
// database in a temporary directory, changed with ldapmodify (ldap-utils).
// Without slapd a test skips, except under CI, where it fails.
package ldaptest

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The directory's suffix and its root account.
const (
	Base         = "dc=lab,dc=test"
	RootDN       = "cn=root," + Base
	RootPassword = "root-secret"
	People       = "ou=people," + Base
	Groups       = "ou=groups," + Base
)

// Server is a running slapd.
type Server struct {
	// URL is ldap://127.0.0.1:PORT.
	URL  string
	t    testing.TB
	stop func()
}

// slapdConf configures slapd: the usual schemas, Active Directory's
// userAccountControl on an auxiliary class of its own (for the checks an
// AD user gets), the memberOf overlay (what AD and many OpenLDAPs give
// user entries), passwords readable by nobody but for binding.
const slapdConf = `include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include /etc/ldap/schema/inetorgperson.schema
include /etc/ldap/schema/nis.schema
attributetype ( 1.2.840.113556.1.4.8 NAME 'userAccountControl' EQUALITY integerMatch SYNTAX 1.3.6.1.4.1.1466.115.121.1.27 SINGLE-VALUE )
objectclass ( 1.3.6.1.4.1.99999.42.1 NAME 'dvfsTestADAccount' AUXILIARY MAY userAccountControl )
pidfile {dir}/slapd.pid
modulepath /usr/lib/ldap
moduleload back_mdb
moduleload memberof
database mdb
maxsize 16777216
suffix "` + Base + `"
rootdn "` + RootDN + `"
rootpw ` + RootPassword + `
directory {dir}/db
overlay memberof
access to attrs=userPassword by self write by anonymous auth by * none
access to * by * read
`

const baseLDIF = `dn: ` + Base + `
objectClass: dcObject
objectClass: organization
o: lab
dc: lab

dn: ` + People + `
objectClass: organizationalUnit
ou: people

dn: ` + Groups + `
objectClass: organizationalUnit
ou: groups
`

// Start runs slapd with an empty directory (the suffix, People and
// Groups) and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	slapd := "/usr/sbin/slapd"
	if _, err := os.Stat(slapd); err != nil {
		need(t, "slapd (Debian package slapd)")
	}
	if _, err := exec.LookPath("ldapmodify"); err != nil {
		need(t, "ldapmodify (Debian package ldap-utils)")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "db"), 0o700); err != nil {
		t.Fatal(err)
	}
	conf := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(slapdConf, "{dir}", dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	s := &Server{URL: "ldap://" + addr, t: t}
	var log bytes.Buffer
	// -d 0: in the foreground, so that the test owns the process.
	cmd := exec.Command(slapd, "-f", conf, "-h", s.URL+"/", "-d", "0")
	cmd.Stdout, cmd.Stderr = &log, &log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	s.stop = func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	}
	t.Cleanup(s.stop)
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("slapd exited: %s", log.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("slapd does not listen on %s after 30s: %v", addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Modify(baseLDIF)
	return s
}

// Stop stops slapd (a directory gone away); the test's end does too.
func (s *Server) Stop() { s.stop() }

// Modify applies ldif as the root account with ldapmodify -a: entries
// without a changetype are added.
func (s *Server) Modify(ldif string) {
	s.t.Helper()
	cmd := exec.Command("ldapmodify", "-a", "-x", "-H", s.URL, "-D", RootDN, "-w", RootPassword)
	cmd.Stdin = strings.NewReader(ldif)
	if out, err := cmd.CombinedOutput(); err != nil {
		s.t.Fatalf("ldapmodify: %v\n%s\n%s", err, out, ldif)
	}
}

// UserLDIF is the LDIF of a user uid=NAME under People with password.
func UserLDIF(name, password string) string {
	return fmt.Sprintf("dn: uid=%s,%s\nobjectClass: inetOrgPerson\nuid: %s\ncn: %s\nsn: %s\nuserPassword: %s\n\n",
		name, People, name, name, name, password)
}

// GroupLDIF is the LDIF of a group cn=NAME under Groups with members
// (user names under People).
func GroupLDIF(name string, members ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "dn: cn=%s,%s\nobjectClass: groupOfNames\ncn: %s\n", name, Groups, name)
	for _, m := range members {
		fmt.Fprintf(&b, "member: uid=%s,%s\n", m, People)
	}
	b.WriteString("\n")
	return b.String()
}

// MemberLDIF adds user to group (add true) or removes them.
func MemberLDIF(group, user string, add bool) string {
	op := "delete"
	if add {
		op = "add"
	}
	return fmt.Sprintf("dn: cn=%s,%s\nchangetype: modify\n%s: member\nmember: uid=%s,%s\n\n", group, Groups, op, user, People)
}

// need skips the test for want, or fails it under CI, whose install
// (.ci/test) provides it.
func need(t testing.TB, want string) {
	t.Helper()
	if os.Getenv("CI") != "" {
		t.Fatalf("%s is missing: CI installs it (.ci/test)", want)
	}
	t.Skipf("%s is missing", want)
}

func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}
