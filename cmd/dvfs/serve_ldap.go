package main

import (
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"

	"github.com/dvfs-project/dvfs/sync/ldapauth"
	"github.com/dvfs-project/dvfs/sync/server"
)

// ldapConfig holds dvfs serve's --ldap-* flags: the [ldap] table of the
// config file (config.go).
type ldapConfig struct {
	dir          ldapauth.Config
	passwordFile string        // the service account's password, in a file
	recheck      time.Duration // server.Config.DirectoryRecheck
	grace        time.Duration // server.Config.DirectoryGrace
	tokenExpires time.Duration // server.Config.LoginLifetime
}

// ldapFlagPrefix prefixes dvfs serve's LDAP flags; the config file's [ldap]
// table names them without it.
const ldapFlagPrefix = "ldap-"

func addLDAPFlags(f *pflag.FlagSet, c *ldapConfig) {
	p := ldapFlagPrefix
	f.StringVar(&c.dir.URL, p+"url", "", "LDAP or Active Directory server, ldap://HOST or ldaps://HOST (empty: no directory; users get tokens from dvfs token create)")
	f.BoolVar(&c.dir.StartTLS, p+"start-tls", false, "upgrade the ldap:// connection with StartTLS")
	f.StringVar(&c.dir.CACert, p+"ca-cert", "", "PEM file of the CA of the directory's certificate (default: the system's)")
	f.StringVar(&c.dir.BindDN, p+"bind-dn", "", "service account that searches users and re-checks them (empty: anonymous)")
	f.StringVar(&c.passwordFile, p+"bind-password-file", "", "file holding the service account's password (mode 0600)")
	f.StringVar(&c.dir.BaseDN, p+"base-dn", "", "where users are searched, e.g. ou=people,dc=lab,dc=example")
	f.StringVar(&c.dir.UserFilter, p+"user-filter", "(uid={user})", "filter finding a user; AD: (sAMAccountName={user})")
	f.StringVar(&c.dir.UserDN, p+"user-dn", "", "what a login binds as, e.g. uid={user},ou=people,dc=lab,dc=example or {user}@lab.example (empty: the DN the filter finds)")
	f.StringVar(&c.dir.DisabledFilter, p+"disabled-filter", "", "filter matching disabled users, e.g. (pwdAccountLockedTime=*); AD's userAccountControl bit 2 always counts")
	f.StringVar(&c.dir.AdminGroup, p+"admin-group", "", "DN of the group whose members are dvfs admins")
	f.StringVar(&c.dir.GroupAttribute, p+"group-attribute", "memberOf", "attribute of a user's entry listing their groups' DNs")
	f.StringVar(&c.dir.MemberAttribute, p+"member-attribute", "", "read groups' member, uniqueMember or memberUid instead of the user's group-attribute")
	f.StringVar(&c.dir.GroupBaseDN, p+"group-base-dn", "", "where groups are searched with member-attribute (empty: only the admin group)")
	f.DurationVar(&c.dir.Timeout, p+"timeout", 10*time.Second, "bound on connecting to the directory and on each of its operations")
	f.DurationVar(&c.recheck, p+"recheck", server.DefaultDirectoryRecheck, "ask the directory again whether a logged-in user is still enabled, and an admin, at most this often")
	f.DurationVar(&c.grace, p+"grace", server.DefaultDirectoryGrace, "while the directory is unreachable, its last answer about a user stands this much longer")
	f.DurationVar(&c.tokenExpires, p+"token-expires", server.DefaultLoginLifetime, "lifetime of a token dvfs login makes")
}

// directory returns the configured directory, nil without --ldap-url.
func (c *ldapConfig) directory() (server.Directory, error) {
	if c.dir.URL == "" {
		return nil, nil
	}
	cfg := c.dir
	if c.passwordFile != "" {
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--ldap-bind-password-file: %w", err)
		}
		cfg.BindPassword = strings.TrimRight(string(b), "\r\n")
		if cfg.BindPassword == "" {
			return nil, fmt.Errorf("--ldap-bind-password-file %s is empty", c.passwordFile)
		}
	} else if cfg.BindDN != "" {
		return nil, fmt.Errorf("--ldap-bind-dn needs --ldap-bind-password-file")
	}
	if c.recheck < time.Second || c.grace < 0 || c.tokenExpires < time.Minute {
		return nil, fmt.Errorf("--ldap-recheck (at least 1s), --ldap-grace (not negative) and --ldap-token-expires (at least 1m): %v, %v, %v",
			c.recheck, c.grace, c.tokenExpires)
	}
	return ldapauth.New(cfg)
}
