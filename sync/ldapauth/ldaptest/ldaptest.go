// Package ldaptest runs a real OpenLDAP server (Debian's slapd) for tests:
// its own process on a loopback port, with a configuration and an mdb
// database in a temporary directory, changed with ldapmodify (ldap-utils).
// Without slapd a test skips, except under CI, where it fails.
package ldaptest

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
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
	URL string
	// With StartTLS: TLSURL is ldaps://127.0.0.1:PORT, and the server's
	// certificate (for 127.0.0.1, on URL's StartTLS too) is signed by
	// the CA in the PEM file CACert.
	TLSURL, CACert string
	t              testing.TB
	stop           func()
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
	return start(t, false)
}

// StartTLS is Start with TLS: StartTLS on URL, and TLSURL (ldaps), with a
// certificate from a CA made for the test.
func StartTLS(t testing.TB) *Server {
	t.Helper()
	return start(t, true)
}

func start(t testing.TB, withTLS bool) *Server {
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
	conf := strings.ReplaceAll(slapdConf, "{dir}", dir)
	addr := disktest.FreeAddr(t)
	s := &Server{URL: "ldap://" + addr, t: t}
	listen := s.URL + "/"
	if withTLS {
		s.CACert = filepath.Join(dir, "ca.pem")
		cert, key := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
		if err := makeCerts(s.CACert, cert, key); err != nil {
			t.Fatal(err)
		}
		conf = fmt.Sprintf("TLSCACertificateFile %s\nTLSCertificateFile %s\nTLSCertificateKeyFile %s\n", s.CACert, cert, key) + conf
		s.TLSURL = "ldaps://" + disktest.FreeAddr(t)
		listen += " " + s.TLSURL + "/"
	}
	confFile := filepath.Join(dir, "slapd.conf")
	if err := os.WriteFile(confFile, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	var log bytes.Buffer
	// -d 0: in the foreground, so that the test owns the process.
	cmd := exec.Command(slapd, "-f", confFile, "-h", listen, "-d", "0")
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

// makeCerts writes a CA certificate and a server certificate for
// 127.0.0.1 it signed, with the server's key, as PEM files.
func makeCerts(caFile, certFile, keyFile string) error {
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	now := time.Now()
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "dvfs test CA"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames: []string{"localhost"}, KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	for file, blk := range map[string]*pem.Block{
		caFile:   {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(file, pem.EncodeToMemory(blk), 0o600); err != nil {
			return err
		}
	}
	return nil
}
