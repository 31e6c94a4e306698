//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/server"
)

// Two `dvfs serve` over one etcd cluster and one object store, each
// pushing new versions to its own lab's multicast group (on loopback): a
// version published through either starts one session on each server,
// the publisher included; a version published before the second server
// started starts none there. Read as workstations read the sessions
// (GET /v1/multicast); the sending itself, to real receivers, is
// TestMulticastFillsCache's.
func TestPushOnPublishAcrossServers(t *testing.T) {
	c, _, flags := etcdAndS3(t)
	mc := func(group string) []string {
		return append(slices.Clone(flags), "--multicast-group", group, "--multicast-iface", "lo")
	}
	dataA, dataB := t.TempDir(), t.TempDir()
	a := startServerAt(t, dataA, "127.0.0.1:0", mc("239.255.42.1:7421")...)
	publishRandom(t, a, "early", 1<<20, 'e')
	shareRepoKeys(t, dataA, dataB)
	b := startServerAt(t, dataB, "127.0.0.1:0", mc("239.255.42.2:7421")...)
	c.WaitWatchers(4) // each server's catalog and access-set watches

	sessions := func(s *serverProc) []string {
		t.Helper()
		cl, err := client.New(client.Config{Server: s.url, Token: s.token})
		if err != nil {
			t.Fatal(err)
		}
		list, err := cl.MulticastSessions(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, sess := range list {
			out = append(out, fmt.Sprintf("%s@%d", sess.Template, sess.Version))
		}
		slices.Sort(out)
		return out
	}
	waitFor := func(s *serverProc, ref string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !slices.Contains(sessions(s), ref) {
			if time.Now().After(deadline) {
				t.Fatalf("after 60 s the server lists sessions %q, not %s; its log:\n%s", sessions(s), ref, s.log)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	publishRandom(t, a, "lab", 1<<20, 'l')
	waitFor(b, "lab@1")
	publishRandom(t, b, "lab", 1<<20, 'm')
	waitFor(a, "lab@2") // A's watch, in commit order, has told of lab@1 too
	waitFor(b, "lab@2")
	if got, want := sessions(a), []string{"early@1", "lab@1", "lab@2"}; !slices.Equal(got, want) {
		t.Errorf("the first server's sessions: %q, want %q", got, want)
	}
	if got, want := sessions(b), []string{"lab@1", "lab@2"}; !slices.Equal(got, want) {
		t.Errorf("the second server's sessions: %q, want %q", got, want)
	}
}

// shareRepoKeys copies the signing key and the admin token of the server
// with data directory from into data directory to, before its server's
// first start: one repository, one signing key (README, Several
// servers); the admin token the first made works on all of them.
func shareRepoKeys(t *testing.T, from, to string) {
	t.Helper()
	for _, f := range []string{server.KeyFile, server.PubKeyFile, server.AdminTokenFile} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
