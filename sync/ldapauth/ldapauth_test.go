package ldapauth_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/ldapauth"
	"github.com/dvfs-project/dvfs/sync/ldapauth/ldaptest"
)

// lab is a directory with: alice, an admin (dvfs-admins) in cs101; bob, a
// user in cs101; dave, disabled the OpenLDAP way (a filter); erin,
// disabled the Active Directory way (userAccountControl bit 2); frank, an
// enabled AD-style account.
func lab(t *testing.T) *ldaptest.Server {
	s := ldaptest.Start(t)
	s.Modify(ldaptest.UserLDIF("alice", "alice-pw") + ldaptest.UserLDIF("bob", "bob-pw") +
		ldaptest.UserLDIF("dave", "dave-pw") + ldaptest.UserLDIF("erin", "erin-pw") + ldaptest.UserLDIF("frank", "frank-pw"))
	s.Modify("dn: uid=dave," + ldaptest.People + "\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\n" +
		"dn: uid=erin," + ldaptest.People + "\nchangetype: modify\nadd: objectClass\nobjectClass: dvfsTestADAccount\n-\nadd: userAccountControl\nuserAccountControl: 514\n\n" +
		"dn: uid=frank," + ldaptest.People + "\nchangetype: modify\nadd: objectClass\nobjectClass: dvfsTestADAccount\n-\nadd: userAccountControl\nuserAccountControl: 512\n\n")
	s.Modify(ldaptest.GroupLDIF("dvfs-admins", "alice") + ldaptest.GroupLDIF("cs101", "alice", "bob"))
	return s
}

func config(s *ldaptest.Server) ldapauth.Config {
	return ldapauth.Config{
		URL:            s.URL,
		BindDN:         ldaptest.RootDN,
		BindPassword:   ldaptest.RootPassword,
		BaseDN:         ldaptest.People,
		UserFilter:     "(&(objectClass=inetOrgPerson)(uid={user}))",
		DisabledFilter: "(employeeType=disabled)",
		AdminGroup:     "cn=dvfs-admins," + ldaptest.Groups,
	}
}

func isRefused(err error) bool {
	var r interface{ Refused() bool }
	return errors.As(err, &r) && r.Refused()
}

func TestDirectory(t *testing.T) {
	s := lab(t)
	ctx := context.Background()
	memberAttr := config(s)
	memberAttr.MemberAttribute, memberAttr.GroupBaseDN = "member", ldaptest.Groups
	template := config(s)
	template.UserDN = "uid={user}," + ldaptest.People
	anonymous := config(s)
	anonymous.BindDN, anonymous.BindPassword = "", ""
	for name, cfg := range map[string]ldapauth.Config{
		"memberOf":            config(s),
		"member":              memberAttr,
		"bind DN template":    template,
		"anonymous searching": anonymous,
	} {
		t.Run(name, func(t *testing.T) {
			d, err := ldapauth.New(cfg)
			if err != nil {
				t.Fatal(err)
			}
			role, groups, err := d.Login(ctx, "alice", "alice-pw")
			if err != nil || role != api.RoleAdmin || !slices.Equal(groups, []string{"cs101", "dvfs-admins"}) {
				t.Fatalf("alice: %q %q %v", role, groups, err)
			}
			role, groups, err = d.Login(ctx, "bob", "bob-pw")
			if err != nil || role != api.RoleUser || !slices.Equal(groups, []string{"cs101"}) {
				t.Fatalf("bob: %q %q %v", role, groups, err)
			}
			if role, _, err := d.Login(ctx, "frank", "frank-pw"); err != nil || role != api.RoleUser {
				t.Fatalf("frank (enabled AD account): %q %v", role, err)
			}
			for _, c := range []struct{ user, pw string }{
				{"bob", "alice-pw"}, {"bob", ""}, {"nobody", "x"}, {"dave", "dave-pw"}, {"erin", "erin-pw"},
				{"*", "bob-pw"}, {"bob)(uid=*", "bob-pw"},
			} {
				if _, _, err := d.Login(ctx, c.user, c.pw); !isRefused(err) {
					t.Errorf("login %q with %q: %v, want a refusal", c.user, c.pw, err)
				}
			}
			if role, _, err := d.Lookup(ctx, "bob"); err != nil || role != api.RoleUser {
				t.Fatalf("lookup bob: %q %v", role, err)
			}
			for _, user := range []string{"nobody", "dave", "erin", "*"} {
				if _, _, err := d.Lookup(ctx, user); !isRefused(err) {
					t.Errorf("lookup %q: %v, want a refusal", user, err)
				}
			}
		})
	}
}

// The answers follow the directory: out of the admin group, a user; a
// disabled account, refused.
func TestDirectoryChanges(t *testing.T) {
	s := lab(t)
	ctx := context.Background()
	d, err := ldapauth.New(config(s))
	if err != nil {
		t.Fatal(err)
	}
	s.Modify(ldaptest.MemberLDIF("dvfs-admins", "bob", true))
	if role, _, err := d.Lookup(ctx, "bob"); err != nil || role != api.RoleAdmin {
		t.Fatalf("bob in dvfs-admins: %q %v", role, err)
	}
	s.Modify(ldaptest.MemberLDIF("dvfs-admins", "bob", false))
	if role, _, err := d.Lookup(ctx, "bob"); err != nil || role != api.RoleUser {
		t.Fatalf("bob out of dvfs-admins: %q %v", role, err)
	}
	s.Modify("dn: uid=bob," + ldaptest.People + "\nchangetype: modify\nadd: employeeType\nemployeeType: disabled\n\n")
	if _, _, err := d.Lookup(ctx, "bob"); !isRefused(err) {
		t.Fatalf("bob disabled: %v", err)
	}
}

func TestDirectoryUnreachable(t *testing.T) {
	d, err := ldapauth.New(ldapauth.Config{URL: "ldap://127.0.0.1:1", BaseDN: ldaptest.People, UserFilter: "(uid={user})",
		AdminGroup: "cn=dvfs-admins," + ldaptest.Groups})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.Lookup(context.Background(), "bob"); err == nil || isRefused(err) {
		t.Fatalf("an unreachable directory: %v, want a failure that is no refusal", err)
	}
}

func TestConfigChecked(t *testing.T) {
	good := ldapauth.Config{URL: "ldap://dc.lab.test", BaseDN: "dc=lab,dc=test", UserFilter: "(uid={user})", AdminGroup: "cn=admins,dc=lab,dc=test"}
	for name, change := range map[string]func(*ldapauth.Config){
		"scheme":          func(c *ldapauth.Config) { c.URL = "http://dc.lab.test" },
		"no host":         func(c *ldapauth.Config) { c.URL = "ldap://" },
		"ldaps+starttls":  func(c *ldapauth.Config) { c.URL, c.StartTLS = "ldaps://dc.lab.test", true },
		"no base":         func(c *ldapauth.Config) { c.BaseDN = "" },
		"filter no user":  func(c *ldapauth.Config) { c.UserFilter = "(uid=alice)" },
		"bad filter":      func(c *ldapauth.Config) { c.UserFilter = "(uid={user}" },
		"bad disabled":    func(c *ldapauth.Config) { c.DisabledFilter = "employeeType=disabled)" },
		"dn no user":      func(c *ldapauth.Config) { c.UserDN = "uid=alice,dc=lab,dc=test" },
		"admin group":     func(c *ldapauth.Config) { c.AdminGroup = "not a dn" },
		"ca without tls":  func(c *ldapauth.Config) { c.CACert = "/etc/ssl/certs/ca-certificates.crt" },
		"missing ca file": func(c *ldapauth.Config) { c.StartTLS, c.CACert = true, "/nonexistent.pem" },
	} {
		cfg := good
		change(&cfg)
		if _, err := ldapauth.New(cfg); err == nil {
			t.Errorf("%s: accepted %+v", name, cfg)
		}
	}
	if _, err := ldapauth.New(good); err != nil {
		t.Fatal(err)
	}
}

// StartTLS and ldaps:// with the directory's CA; without it, the
// directory's certificate is not trusted and nothing is sent.
func TestDirectoryTLS(t *testing.T) {
	s := ldaptest.StartTLS(t)
	s.Modify(ldaptest.UserLDIF("bob", "bob-pw") + ldaptest.GroupLDIF("dvfs-admins", "bob"))
	ctx := context.Background()
	startTLS := config(s)
	startTLS.StartTLS, startTLS.CACert = true, s.CACert
	ldaps := config(s)
	ldaps.URL, ldaps.CACert = s.TLSURL, s.CACert
	untrusted := config(s)
	untrusted.URL = s.TLSURL
	for name, c := range map[string]struct {
		cfg ldapauth.Config
		ok  bool
	}{
		"starttls":             {startTLS, true},
		"ldaps":                {ldaps, true},
		"ldaps without the CA": {untrusted, false},
	} {
		d, err := ldapauth.New(c.cfg)
		if err != nil {
			t.Fatal(err)
		}
		role, _, err := d.Login(ctx, "bob", "bob-pw")
		switch {
		case c.ok && (err != nil || role != api.RoleAdmin):
			t.Errorf("%s: %q %v", name, role, err)
		case !c.ok && (err == nil || isRefused(err)):
			t.Errorf("%s: %v, want a failure that is no refusal", name, err)
		}
	}
}
