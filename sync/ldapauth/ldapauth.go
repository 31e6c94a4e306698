// Package ldapauth asks an LDAP directory (OpenLDAP, Active Directory) who
// a lab's users are: it checks a user's password by binding as them, and
// says whether a user still exists and is enabled, whether they are an
// admin (a member of the admin group), and which groups they are in. It is
// the only package that imports an LDAP library; the server sees it
// through a small interface of its own (sync/server.Directory).
package ldapauth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-ldap/ldap/v3"

	"github.com/dvfs-project/dvfs/sync/api"
)

// Config says where the directory is and how its users and groups look.
type Config struct {
	// URL is ldap://HOST[:PORT] or ldaps://HOST[:PORT].
	URL string
	// StartTLS upgrades an ldap:// connection to TLS before binding.
	StartTLS bool
	// CACert is a PEM file of the CA that signed the directory's
	// certificate; empty: the system's roots.
	CACert string
	// BindDN and BindPassword are the service account that searches for
	// users and checks them again later; an empty BindDN searches
	// anonymously.
	BindDN, BindPassword string
	// BaseDN is where users are searched (the whole subtree).
	BaseDN string
	// UserFilter finds a user's entry; {user} stands for the escaped
	// name, e.g. (uid={user}) or (sAMAccountName={user}).
	UserFilter string
	// UserDN, when set, is what a login binds as, {user} standing for the
	// escaped name: uid={user},ou=people,dc=lab,dc=example or, for Active
	// Directory, {user}@lab.example. Empty: the DN UserFilter found.
	UserDN string
	// DisabledFilter, when set, marks disabled entries, e.g.
	// (pwdAccountLockedTime=*) with OpenLDAP's ppolicy. An entry with
	// Active Directory's userAccountControl bit 2 set is disabled too.
	DisabledFilter string
	// AdminGroup is the DN of the group whose members are admins.
	AdminGroup string
	// GroupAttribute is the attribute of a user's entry that lists the
	// DNs of their groups (memberOf, the default).
	GroupAttribute string
	// MemberAttribute, when set, is read on group entries instead: member
	// or uniqueMember (a member's DN) or memberUid (their name). Groups are
	// then searched under GroupBaseDN (or only AdminGroup is checked).
	MemberAttribute string
	// GroupBaseDN is where groups are searched with MemberAttribute.
	GroupBaseDN string
	// Timeout bounds connecting and each operation (default 10s).
	Timeout time.Duration
}

// Directory is a configured LDAP directory. Each call opens its own
// connection: logins and checks are rare (a check per active user per
// re-check period), and a connection of its own never carries one user's
// bind into another's request.
type Directory struct {
	cfg   Config
	tls   *tls.Config
	admin *ldap.DN // AdminGroup, parsed
}

// Refused is the error of a user the directory does not let in: a wrong
// password, no such user, a disabled one. Its Refused method says so to
// callers that do not import this package; Error says why, for the log.
type Refused struct{ Reason string }

func (e *Refused) Error() string { return e.Reason }

// Refused reports that the directory refused the user (not that it failed).
func (e *Refused) Refused() bool { return true }

func refused(format string, args ...any) error { return &Refused{Reason: fmt.Sprintf(format, args...)} }

// New checks cfg and returns its Directory. It does not connect.
func New(cfg Config) (*Directory, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.GroupAttribute == "" {
		cfg.GroupAttribute = "memberOf"
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || (u.Scheme != "ldap" && u.Scheme != "ldaps") || u.Host == "" {
		return nil, fmt.Errorf("ldap url %q: want ldap://HOST[:PORT] or ldaps://HOST[:PORT]", cfg.URL)
	}
	if cfg.StartTLS && u.Scheme == "ldaps" {
		return nil, errors.New("ldap: start-tls is for ldap:// URLs; ldaps:// is TLS already")
	}
	if cfg.BaseDN == "" || cfg.UserFilter == "" || cfg.AdminGroup == "" {
		return nil, errors.New("ldap: base-dn, user-filter and admin-group are needed")
	}
	for name, tmpl := range map[string]string{"user-filter": cfg.UserFilter, "user-dn": cfg.UserDN} {
		if tmpl != "" && !strings.Contains(tmpl, "{user}") {
			return nil, fmt.Errorf("ldap %s %q: it must hold {user}", name, tmpl)
		}
	}
	for name, f := range map[string]string{"user-filter": cfg.UserFilter, "disabled-filter": cfg.DisabledFilter} {
		if f == "" {
			continue
		}
		if _, err := ldap.CompileFilter(strings.ReplaceAll(f, "{user}", "x")); err != nil {
			return nil, fmt.Errorf("ldap %s %q: %w", name, f, err)
		}
	}
	d := &Directory{cfg: cfg}
	if d.admin, err = ldap.ParseDN(cfg.AdminGroup); err != nil {
		return nil, fmt.Errorf("ldap admin-group %q: %w", cfg.AdminGroup, err)
	}
	if u.Scheme == "ldaps" || cfg.StartTLS {
		d.tls = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
		if cfg.CACert != "" {
			pem, err := os.ReadFile(cfg.CACert)
			if err != nil {
				return nil, fmt.Errorf("ldap ca-cert: %w", err)
			}
			d.tls.RootCAs = x509.NewCertPool()
			if !d.tls.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("ldap ca-cert %s: no PEM certificate", cfg.CACert)
			}
		}
	} else if cfg.CACert != "" {
		return nil, errors.New("ldap ca-cert: give an ldaps:// URL or start-tls")
	}
	return d, nil
}

// Login checks user's password by binding as them, then answers as
// Lookup does. A refusal is a *Refused.
func (d *Directory) Login(ctx context.Context, user, password string) (role string, groups []string, err error) {
	// An empty password is an unauthenticated bind, which succeeds.
	if err := api.ValidPrincipalName(user); err != nil || password == "" {
		return "", nil, refused("no user name or no password")
	}
	conn, err := d.dial(ctx)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close()
	var entry *ldap.Entry
	if d.cfg.UserDN != "" {
		dn := strings.ReplaceAll(d.cfg.UserDN, "{user}", ldap.EscapeDN(user))
		if err := d.bindAs(conn, dn, password, user); err != nil {
			return "", nil, err
		}
		if err := d.bindService(conn); err != nil {
			return "", nil, err
		}
		if entry, err = d.find(conn, user); err != nil {
			return "", nil, err
		}
		if bound, err := ldap.ParseDN(dn); err == nil {
			if found, err := ldap.ParseDN(entry.DN); err != nil || !bound.EqualFold(found) {
				return "", nil, refused("%s bound as %s, but the user filter finds %s", user, dn, entry.DN)
			}
		}
	} else {
		if err := d.bindService(conn); err != nil {
			return "", nil, err
		}
		if entry, err = d.find(conn, user); err != nil {
			return "", nil, err
		}
		if err := d.bindAs(conn, entry.DN, password, user); err != nil {
			return "", nil, err
		}
		if err := d.bindService(conn); err != nil {
			return "", nil, err
		}
	}
	return d.standing(conn, user, entry)
}

// Lookup says whether user still exists and is enabled (a *Refused when
// not), their role (api.RoleAdmin for a member of AdminGroup, else
// api.RoleUser) and their groups (the first RDN value of each group that
// is a valid group name).
func (d *Directory) Lookup(ctx context.Context, user string) (role string, groups []string, err error) {
	if err := api.ValidPrincipalName(user); err != nil {
		return "", nil, refused("%v", err)
	}
	conn, err := d.dial(ctx)
	if err != nil {
		return "", nil, err
	}
	defer conn.Close()
	if err := d.bindService(conn); err != nil {
		return "", nil, err
	}
	entry, err := d.find(conn, user)
	if err != nil {
		return "", nil, err
	}
	return d.standing(conn, user, entry)
}

func (d *Directory) dial(ctx context.Context) (*ldap.Conn, error) {
	dialer := &net.Dialer{Timeout: d.cfg.Timeout}
	if deadline, ok := ctx.Deadline(); ok {
		dialer.Deadline = deadline
	}
	opts := []ldap.DialOpt{ldap.DialWithDialer(dialer)}
	if d.tls != nil {
		opts = append(opts, ldap.DialWithTLSConfig(d.tls))
	}
	conn, err := ldap.DialURL(d.cfg.URL, opts...)
	if err != nil {
		return nil, fmt.Errorf("ldap: %w", err)
	}
	conn.SetTimeout(d.cfg.Timeout)
	if d.cfg.StartTLS {
		if err := conn.StartTLS(d.tls); err != nil {
			conn.Close()
			return nil, fmt.Errorf("ldap start-tls: %w", err)
		}
	}
	return conn, nil
}

// bindAs binds as a user: wrong credentials are a refusal.
func (d *Directory) bindAs(conn *ldap.Conn, dn, password, user string) error {
	err := conn.Bind(dn, password)
	if ldap.IsErrorWithCode(err, ldap.LDAPResultInvalidCredentials) {
		return refused("wrong password for %s (or no such user)", user)
	}
	if err != nil {
		return fmt.Errorf("ldap bind as %s: %w", user, err)
	}
	return nil
}

// bindService binds as the service account, if there is one.
func (d *Directory) bindService(conn *ldap.Conn) error {
	if d.cfg.BindDN == "" {
		return nil
	}
	if err := conn.Bind(d.cfg.BindDN, d.cfg.BindPassword); err != nil {
		return fmt.Errorf("ldap bind as the service account %s: %w", d.cfg.BindDN, err)
	}
	return nil
}

// find returns user's entry: one, or a refusal.
func (d *Directory) find(conn *ldap.Conn, user string) (*ldap.Entry, error) {
	filter := strings.ReplaceAll(d.cfg.UserFilter, "{user}", ldap.EscapeFilter(user))
	res, err := conn.Search(ldap.NewSearchRequest(d.cfg.BaseDN, ldap.ScopeWholeSubtree, ldap.NeverDerefAliases, 2, 0, false,
		filter, []string{d.cfg.GroupAttribute, "userAccountControl"}, nil))
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultSizeLimitExceeded) {
		return nil, fmt.Errorf("ldap search for %s: %w", user, err)
	}
	switch {
	case res == nil || len(res.Entries) == 0:
		return nil, refused("no user %s in the directory (%s under %s)", user, filter, d.cfg.BaseDN)
	case len(res.Entries) > 1:
		return nil, refused("%s matches more than one entry (%s under %s)", user, filter, d.cfg.BaseDN)
	}
	return res.Entries[0], nil
}

// standing checks entry is enabled and reads its role and groups.
func (d *Directory) standing(conn *ldap.Conn, user string, entry *ldap.Entry) (string, []string, error) {
	if uac := entry.GetAttributeValue("userAccountControl"); uac != "" {
		if n, err := strconv.ParseInt(uac, 10, 64); err == nil && n&2 != 0 {
			return "", nil, refused("%s is disabled (userAccountControl %d)", user, n)
		}
	}
	if d.cfg.DisabledFilter != "" {
		res, err := conn.Search(ldap.NewSearchRequest(entry.DN, ldap.ScopeBaseObject, ldap.NeverDerefAliases, 1, 0, true,
			d.cfg.DisabledFilter, []string{"1.1"}, nil))
		if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
			return "", nil, fmt.Errorf("ldap: checking whether %s is disabled: %w", user, err)
		}
		if res != nil && len(res.Entries) > 0 {
			return "", nil, refused("%s is disabled (matches %s)", user, d.cfg.DisabledFilter)
		}
	}
	groupDNs, err := d.groups(conn, user, entry)
	if err != nil {
		return "", nil, err
	}
	role := api.RoleUser
	var groups []string
	for _, g := range groupDNs {
		dn, err := ldap.ParseDN(g)
		if err != nil || len(dn.RDNs) == 0 {
			continue
		}
		if dn.EqualFold(d.admin) {
			role = api.RoleAdmin
		}
		if rdn := dn.RDNs[0]; len(rdn.Attributes) == 1 && api.ValidGroupName(rdn.Attributes[0].Value) == nil {
			groups = append(groups, rdn.Attributes[0].Value)
		}
	}
	slices.Sort(groups)
	return role, slices.Compact(groups), nil
}

// groups returns the DNs of the groups entry is a member of: from its
// GroupAttribute, or by searching groups' MemberAttribute.
func (d *Directory) groups(conn *ldap.Conn, user string, entry *ldap.Entry) ([]string, error) {
	if d.cfg.MemberAttribute == "" {
		return entry.GetAttributeValues(d.cfg.GroupAttribute), nil
	}
	member := entry.DN
	if strings.EqualFold(d.cfg.MemberAttribute, "memberUid") {
		member = user
	}
	filter := "(" + d.cfg.MemberAttribute + "=" + ldap.EscapeFilter(member) + ")"
	base, scope := d.cfg.GroupBaseDN, ldap.ScopeWholeSubtree
	if base == "" {
		base, scope = d.cfg.AdminGroup, ldap.ScopeBaseObject
	}
	res, err := conn.Search(ldap.NewSearchRequest(base, scope, ldap.NeverDerefAliases, 0, 0, true, filter, []string{"1.1"}, nil))
	if err != nil && !ldap.IsErrorWithCode(err, ldap.LDAPResultNoSuchObject) {
		return nil, fmt.Errorf("ldap: the groups of %s: %w", user, err)
	}
	var out []string
	if res != nil {
		for _, e := range res.Entries {
			out = append(out, e.DN)
		}
	}
	return out, nil
}
