package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// TestConfigLDAPTable: [ldap] keys set dvfs serve's --ldap-* flags, and an
// --ldap-* flag in [serve] is sent to [ldap].
func TestConfigLDAPTable(t *testing.T) {
	dir := disktest.TempDir(t)
	path := filepath.Join(dir, "dvfs.toml")
	os.WriteFile(path, []byte(`[serve]
data = "/srv/dvfs"
[ldap]
url = "ldap://127.0.0.1:3389"
admin-group = "cn=admins,dc=lab,dc=test"
recheck = "5s"
start-tls = true
`), 0o600)
	serve := parsed(t, "serve", "--ldap-recheck", "2s")
	if err := applyConfigFile(serve, path); err != nil {
		t.Fatal(err)
	}
	checkFlags(t, serve, map[string]string{
		"ldap-url":         "ldap://127.0.0.1:3389",
		"ldap-admin-group": "cn=admins,dc=lab,dc=test",
		"ldap-recheck":     "2s", // the command line's
		"ldap-start-tls":   "true",
		"data":             "/srv/dvfs",
	})
	for body, want := range map[string]string{
		"[serve]\nldap-url = \"ldap://x\"\n": "write it in [ldap] as url",
		"[ldap]\nnope = 1\n":                 `unknown key "nope"`,
		"[ldap]\nldap-url = \"ldap://x\"\n":  `unknown key "ldap-url"`,
		"[ldapx]\n":                          "the tables are serve, mount, ldap",
	} {
		os.WriteFile(path, []byte(body), 0o600)
		err := applyConfigFile(parsed(t, "serve"), path)
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", body, err, want)
		}
	}
	// The committed example's [ldap] table is all comments.
	if err := applyConfigFile(parsed(t, "serve"), "dist/serve.toml"); err != nil {
		t.Fatal(err)
	}
}
