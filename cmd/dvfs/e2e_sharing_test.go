//go:build linux

package main

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// as returns s acting with the token of a new user name.
func (s *serverProc) as(t *testing.T, name string) *serverProc {
	t.Helper()
	u := *s
	// The token is printed alone on its line (stdout); what it is, on
	// stderr.
	u.token = regexp.MustCompile(`(?m)^dvfs_\S+$`).FindString(s.dvfs("token", "create", "--role", "user", name))
	if u.token == "" {
		t.Fatalf("no token for %s", name)
	}
	return &u
}

// refusedCmd runs a command that must fail, with an error naming who ran
// it, and a server log line naming who asked for what.
func refusedCmd(t *testing.T, s, u *serverProc, who string, logParts []string, args ...string) {
	t.Helper()
	out, err := u.try(args...)
	if err == nil || !strings.Contains(out, who) || !strings.Contains(out, "403") {
		t.Errorf("dvfs %s as %s: %v\n%s\nwant refused (403) naming %s", strings.Join(args, " "), who, err, out, who)
		return
	}
	parts := append([]string{"principal=" + who}, logParts...)
	if !s.log.waitFor(time.Minute, func(log string) bool { return hasLine(log, parts...) }) {
		t.Errorf("dvfs %s as %s: no server log line with %q:\n%s", strings.Join(args, " "), who, parts, s.log)
	}
}

// hasLine says whether a line of log holds every one of parts.
func hasLine(log string, parts ...string) bool {
	for _, line := range strings.Split(log, "\n") {
		all := true
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			return true
		}
	}
	return false
}

// An instructor shares a clone with a group through the real binaries:
// a member lists and clones it, a non-member and the member's writes are
// refused, an admin lists and removes anyone's clone.
func TestSharingAndAdminClones(t *testing.T) {
	s := startServerAt(t, t.TempDir(), "127.0.0.1:0", "--group", "cs101=bob")
	disk, _ := publishRandom(t, s, "base", 1<<20, 'b')
	alice, bob, carol := s.as(t, "alice"), s.as(t, "bob"), s.as(t, "carol")
	alice.dvfs("clone", "create", "--template", "base", "lab")

	refusedCmd(t, s, bob, "bob", []string{"owner=alice", "clone=lab", "access=remove"}, "clone", "rm", "--user", "alice", "lab")
	refusedCmd(t, s, bob, "bob", []string{"owner=alice", `access="read the history of"`}, "clone", "list", "--user", "alice")
	refusedCmd(t, s, bob, "bob", []string{"owner=alice", "clone=lab", "access=read"}, "clone", "create", "--from", "alice/lab", "mine")

	if out := alice.dvfs("clone", "share", "lab", "--group", "cs101"); !strings.Contains(out, "cs101") {
		t.Fatalf("share: %s", out)
	}
	if out := bob.dvfs("clone", "list", "--shared"); !regexp.MustCompile(`(?m)^alice\s+lab\s`).MatchString(out) {
		t.Fatalf("bob's shared clones:\n%s", out)
	}
	if out := bob.dvfs("clone", "create", "--from", "alice/lab", "mine"); !strings.Contains(out, "alice/lab@1") {
		t.Fatalf("bob clones the shared clone: %s", out)
	}
	exp := filepath.Join(t.TempDir(), "exp")
	bob.dvfs("clone", "export", "mine", exp)
	if b, err := os.ReadFile(filepath.Join(exp, "disk.vmdk")); err != nil || string(b) != string(disk) {
		t.Errorf("bob's clone's disk: %d bytes, %v; want the shared clone's", len(b), err)
	}
	refusedCmd(t, s, carol, "carol", []string{"owner=alice", "clone=lab", "access=read"}, "clone", "create", "--from", "alice/lab", "mine")
	if out := carol.dvfs("clone", "list", "--shared"); strings.Contains(out, "alice") {
		t.Errorf("carol's shared clones:\n%s", out)
	}

	all := s.dvfs("clone", "list", "--all")
	for _, want := range []string{`(?m)^alice\s+lab\s.*cs101`, `(?m)^bob\s+mine\s`} {
		if !regexp.MustCompile(want).MatchString(all) {
			t.Errorf("every clone, as the admin: no %s in\n%s", want, all)
		}
	}
	s.dvfs("clone", "rm", "--user", "alice", "lab")
	if out := alice.dvfs("clone", "list"); strings.Contains(out, "lab") {
		t.Errorf("alice's clones after the admin removed lab:\n%s", out)
	}
	if out := bob.dvfs("clone", "list", "--shared"); strings.Contains(out, "alice") {
		t.Errorf("a removed clone is still shared:\n%s", out)
	}
	if !hasLine(s.log.String(), "clone removed", "principal=admin", "owner=alice", "clone=lab") {
		t.Errorf("no log line of the admin's removal:\n%s", s.log)
	}
}

// A workstation whose user is over quota keeps what was fsynced, says so
// in dvfs status, and syncs it once an admin raises the quota.
func TestQuotaOverrunKeepsData(t *testing.T) {
	s := startServerAt(t, t.TempDir(), "127.0.0.1:0", "--quota-clone", "1MiB")
	publishRandom(t, s, "base", 1<<20, 'q')
	alice := s.as(t, "alice")
	alice.dvfs("clone", "create", "--template", "base", "lab")
	work := t.TempDir()
	m := alice.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"), "--sync-interval", "1s")

	data := make([]byte, 4<<20)
	rand.NewChaCha8([32]byte{'o'}).Read(data)
	path := filepath.Join(m.dir, "clones", "lab", "big.bin")
	if err := writeSync(path, data); err != nil {
		t.Fatal(err)
	}
	var st string
	for deadline := time.Now().Add(2 * time.Minute); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if st = alice.statusOf(t, m); strings.Contains(st, "SYNC STALLED") {
			break
		}
	}
	if !strings.Contains(st, "NOT SYNCED") || !strings.Contains(st, "quota") {
		t.Fatalf("status over the quota:\n%s\nwant NOT SYNCED, stalled on the quota", st)
	}
	if !hasLine(s.log.String(), "status=507", "user=alice", "quota") {
		t.Errorf("no server log line of alice's refused upload:\n%s", s.log)
	}
	if out := alice.dvfs("quota", "show"); !regexp.MustCompile(`(?m)^alice\s+\S+ \S+\s+1\.0 MiB \(default\)`).MatchString(out) {
		t.Errorf("dvfs quota show:\n%s", out)
	}
	if got, err := os.ReadFile(path); err != nil || string(got) != string(data) {
		t.Fatalf("the fsynced file over the quota: %d bytes, %v", len(got), err)
	}

	s.dvfs("quota", "set", "alice", "64MiB")
	waitGenerationFor(t, alice, "lab", 2, 3*time.Minute)
	if st := alice.statusOf(t, m); strings.Contains(st, "NOT SYNCED") {
		t.Errorf("status after the quota was raised:\n%s", st)
	}
	exp := filepath.Join(t.TempDir(), "exp")
	alice.dvfs("clone", "export", "lab", exp)
	if got, err := os.ReadFile(filepath.Join(exp, "big.bin")); err != nil || string(got) != string(data) {
		t.Fatalf("the file on the server after the quota was raised: %d bytes, %v", len(got), err)
	}
	if out := s.dvfs("quota", "show", "alice"); !strings.Contains(out, "64 MiB") || strings.Contains(out, "default") {
		t.Errorf("dvfs quota show alice, as the admin:\n%s", out)
	}
}
