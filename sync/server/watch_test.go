package server_test

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta/etcdtest"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/multicast"
	"github.com/dvfs-project/dvfs/sync/publish"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
)

// labServer is one server of a shared repository with the multicast
// sessions of its lab (queued, not sent: the sending is
// sync/multicast's and the e2e tests').
type labServer struct {
	sessions *multicast.Sessions
	admin    *client.Client
}

// TestPushOnPublishAcrossServers runs two servers over one etcd cluster,
// each pushing new versions to its own lab's multicast group: a version
// published through either starts one session on both, the publisher's
// included (its handler and its watch both tell of it), and a version
// that was there before the watches began starts none on the server that
// did not publish it. The sessions are read as workstations read them
// (GET /v1/multicast).
func TestPushOnPublishAcrossServers(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{MaxTxnOps: 8192})
	ctx := t.Context()
	blocks := memstore.New()
	_, key, _ := ed25519.GenerateKey(nil)
	pub := key.Public().(ed25519.PublicKey)
	var (
		labs  []labServer
		srvs  []*server.Server
		token string
	)
	for i := range 2 {
		meta, err := etcdmeta.Open(ctx, etcdmeta.Config{Endpoints: c.Endpoints(), Prefix: "repo/", MaxTxnOps: 8192})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { meta.Close() })
		r, err := repo.New(repo.Config{Store: storetest.SplitStore{Store: blocks, Meta: meta}, Key: key})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			dir := disktest.TempDir(t)
			if _, err := server.EnsureAdminToken(ctx, r, dir); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(dir, server.AdminTokenFile))
			token = strings.TrimSpace(string(b))
		}
		sessions := multicast.NewSessions(multicast.SessionsConfig{
			Group: &net.UDPAddr{IP: net.IPv4(239, 192, 7, byte(i+1)), Port: 7421}, Source: r,
			Manifest: func(ctx context.Context, name string, version uint64) (*manifest.Manifest, error) {
				signed, err := r.Signed(ctx, name, version)
				if err != nil {
					return nil, err
				}
				m, _, err := manifest.Open(signed, pub)
				return m, err
			},
		})
		s := server.New(server.Config{Repo: r, Multicast: sessions, PushOnPublish: true})
		hs := httptest.NewServer(s)
		t.Cleanup(hs.Close)
		cl, err := client.New(client.Config{Server: hs.URL, Token: token, ServerKey: pub})
		if err != nil {
			t.Fatal(err)
		}
		labs = append(labs, labServer{sessions: sessions, admin: cl})
		srvs = append(srvs, s)
	}
	a, b := labs[0], labs[1]
	publishThrough := func(l labServer, name string) {
		t.Helper()
		if _, err := publish.Publish(ctx, publish.Config{Server: l.admin, Name: name, Dir: writeTree(t)}); err != nil {
			t.Fatal(err)
		}
	}
	listed := func(l labServer) []string {
		t.Helper()
		list, err := l.admin.MulticastSessions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, s := range list {
			out = append(out, fmt.Sprintf("%s@%d %s", s.Template, s.Version, s.State))
		}
		slices.Sort(out)
		return out
	}
	waitFor := func(l labServer, want string) {
		t.Helper()
		deadline := time.Now().Add(60 * time.Second)
		for !slices.Contains(listed(l), want) {
			if time.Now().After(deadline) {
				t.Fatalf("after 60 s the server lists %q, not %q", listed(l), want)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	publishThrough(a, "base") // before the watches
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan error, len(srvs))
	for _, s := range srvs {
		go func() { done <- s.WatchCatalog(wctx) }()
	}
	c.WaitWatchers(2 * len(srvs)) // the catalog's and the access sets'

	publishThrough(a, "xp")
	waitFor(b, "xp@1 queued")
	publishThrough(b, "xp")
	waitFor(a, "xp@2 queued")
	// Each watch tells in commit order: A has seen xp@1 (its own) by now.
	want := func(l labServer, want ...string) {
		t.Helper()
		if got := listed(l); !slices.Equal(got, want) {
			t.Fatalf("sessions %q, want %q", got, want)
		}
	}
	waitFor(b, "xp@2 queued")
	want(a, "base@1 queued", "xp@1 queued", "xp@2 queued")
	want(b, "xp@1 queued", "xp@2 queued")

	cancel()
	for range srvs {
		if err := <-done; err == nil || ctx.Err() != nil {
			t.Fatalf("WatchCatalog after its context ended: %v", err)
		}
	}
}
