package server_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/clones"
	"github.com/dvfs-project/dvfs/sync/publish"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// Tests of a hostile or careless user against the server: each reaches
// only their own data and the templates, names are checked on every
// route, and uploads are bounded per user.

// user makes a user token and returns its client and raw token.
func (e *env) user(t *testing.T, name string) (*client.Client, string) {
	t.Helper()
	tok, err := e.admin.CreateToken(context.Background(), name, api.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.New(client.Config{Server: e.srv.URL, Token: tok.Token})
	if err != nil {
		t.Fatal(err)
	}
	return c, tok.Token
}

// call sends one raw request and returns its status and body.
func (e *env) call(t *testing.T, token, method, path string, body []byte) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, e.srv.URL+path, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func statusOf(err error) int {
	var he *client.HTTPError
	if errors.As(err, &he) {
		return he.StatusCode()
	}
	return 0
}

// privateBlock returns the ID and bytes of the block of alice's clone
// lab1's xp.vmx (it names the clone, so no template holds it).
func privateBlock(t *testing.T, alice *client.Client) (blockstore.ID, []byte) {
	t.Helper()
	ctx := context.Background()
	m, _, err := alice.CloneManifest(ctx, "lab1")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range m.Files {
		if f.Path == "xp.vmx" {
			var plain []byte
			err := alice.Fetch(ctx, f.Blocks[:1], func(_ blockstore.ID, p []byte) error { plain = bytes.Clone(p); return nil })
			if err != nil {
				t.Fatalf("alice fetches her own block: %v", err)
			}
			return f.Blocks[0], plain
		}
	}
	t.Fatal("no xp.vmx in the clone")
	return blockstore.ID{}, nil
}

// labEnv: template xp published, alice's clone lab1 of it, bob a user.
func labEnv(t *testing.T) (e *env, alice, bob *client.Client, bobToken string) {
	t.Helper()
	e, _ = newBadgerEnv(t)
	ctx := context.Background()
	if _, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "xp", Dir: writeTree(t)}); err != nil {
		t.Fatal(err)
	}
	alice, _ = e.user(t, "alice")
	bob, bobToken = e.user(t, "bob")
	if _, err := clones.Create(ctx, alice, "xp", 0, "lab1"); err != nil {
		t.Fatal(err)
	}
	return e, alice, bob, bobToken
}

func TestBlocksOfOthersClonesUnreadable(t *testing.T) {
	e, alice, bob, _ := labEnv(t)
	ctx := context.Background()
	id, plain := privateBlock(t, alice)

	err := bob.Fetch(ctx, []blockstore.ID{id}, func(blockstore.ID, []byte) error { return nil })
	if !client.IsNotFound(err) {
		t.Fatalf("bob fetched a block of alice's clone: %v", err)
	}
	// Missing says nothing of its existence to bob, the truth to alice.
	if m := missing(t, bob, plain); len(m) != 1 || m[0] != id {
		t.Fatalf("missing for bob: %v, want [%s]", m, id.Short())
	}
	if m := missing(t, alice, plain); len(m) != 0 {
		t.Fatalf("missing for alice: %v", m)
	}
	// Template blocks are every user's.
	tm, _, err := bob.Manifest(ctx, "xp", 0)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for tid := range tm.BlockIDs() {
		if err := bob.Fetch(ctx, []blockstore.ID{tid}, func(blockstore.ID, []byte) error { n++; return nil }); err != nil {
			t.Fatalf("bob fetches a template block: %v", err)
		}
	}
	if n == 0 {
		t.Fatal("no template block fetched")
	}
	// A clone naming the block without its bytes is refused as missing.
	cm := &manifest.Manifest{Kind: manifest.KindClone, Name: "lab2", BlockSize: blockstore.DefaultBlockSize, Files: []manifest.File{
		{Path: "stolen.vmdk", Mode: 0o644, MTime: time.Unix(1, 0), Size: int64(len(plain)), Blocks: []blockstore.ID{id}},
	}}
	if _, err := bob.CreateClone(ctx, cm, "xp", 0); statusOf(err) != http.StatusConflict {
		t.Fatalf("bob's clone naming alice's block: %v, want 409", err)
	}
	// Uploading the bytes proves bob holds them: idempotent, then his.
	if err := bob.Upload(ctx, wholeRecord(plain)); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	fetchPlain(t, bob, plain)
	if m := missing(t, bob, plain); len(m) != 0 {
		t.Fatalf("missing for bob after his upload: %v", m)
	}
	if _, err := bob.CreateClone(ctx, cm, "xp", 0); err != nil {
		t.Fatalf("bob's clone after uploading the block: %v", err)
	}
}

func TestDeltaOnUnreadableBaseRefused(t *testing.T) {
	e, alice, bob, _ := labEnv(t)
	ctx := context.Background()
	base := randomBlock(71)
	if err := alice.Upload(ctx, wholeRecord(base)); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	next, mask := changed(base, 3, 72)
	var refused *api.DeltaRefusedError
	if err := bob.Upload(ctx, deltaRecord(base, next, mask)); !errors.As(err, &refused) || len(refused.BaseMissing) != 1 {
		t.Fatalf("bob's delta on alice's block: %v, want its base missing", err)
	}
	if err := bob.Fetch(ctx, []blockstore.ID{blockstore.Sum(next)}, func(blockstore.ID, []byte) error { return nil }); !client.IsNotFound(err) {
		t.Fatalf("bob fetched the block his delta named: %v", err)
	}
	// A present block bob may not read, sent as a delta, is not his.
	if err := alice.Upload(ctx, deltaRecord(base, next, mask)); err != nil {
		t.Fatal(err)
	}
	own := randomBlock(73)
	if err := bob.Upload(ctx, wholeRecord(own)); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	fake := api.AppendBlock(nil, blockstore.Sum(next), blockstore.AppendDeltaFrame(nil, blockstore.Sum(own), sector, 1, own))
	if err := bob.Upload(ctx, fake); !errors.As(err, &refused) || len(refused.BaseMissing) != 1 {
		t.Fatalf("bob's delta claiming alice's present block: %v, want refused", err)
	}
	if err := bob.Fetch(ctx, []blockstore.ID{blockstore.Sum(next)}, func(blockstore.ID, []byte) error { return nil }); !client.IsNotFound(err) {
		t.Fatalf("bob fetched alice's block after a delta claiming it: %v", err)
	}
	fetchPlain(t, alice, next)
	// A collection rebuilds who reads what: still not bob's, and his own
	// upload, in its grace, still his.
	if _, err := e.admin.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.Fetch(ctx, []blockstore.ID{blockstore.Sum(next)}, func(blockstore.ID, []byte) error { return nil }); !client.IsNotFound(err) {
		t.Fatalf("bob fetched alice's block after a collection: %v", err)
	}
	fetchPlain(t, bob, own)
}

func TestPendingUploadQuota(t *testing.T) {
	e, _ := newBadgerEnv(t, func(c *repo.Config) { c.PendingQuota = 1 << 20 })
	ctx := context.Background()
	bob, _ := e.user(t, "bob")
	batch := func(seed uint64, n int) []byte {
		var b []byte
		for i := range n {
			b = append(b, wholeRecord(randomBlock(seed+uint64(i)))...)
		}
		return b
	}
	if err := bob.Upload(ctx, batch(100, 12)); err != nil { // 768 KiB
		t.Fatal(err)
	}
	err := bob.Upload(ctx, batch(200, 8)) // 512 KiB more: over 1 MiB
	if statusOf(err) != http.StatusInsufficientStorage || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("upload over the pending quota: %v, want 507 naming the quota", err)
	}
	if err := bob.Upload(ctx, batch(100, 12)); err != nil {
		t.Fatalf("the same blocks again are no more: %v", err)
	}
	if got, want := e.repo.Pending("bob"), int64(12*len(blockstore.Encode(nil, randomBlock(100)))); got < want-12*64 || got > want+12*64 {
		t.Fatalf("pending %d, want about %d", got, want)
	}
	// Admins publish templates; they have no such quota.
	if err := e.admin.Upload(ctx, batch(300, 40)); err != nil {
		t.Fatalf("admin upload: %v", err)
	}
	// A commit naming them frees the quota.
	e.settle(t)
	var plains [][]byte
	for i := range 12 {
		plains = append(plains, randomBlock(100+uint64(i)))
	}
	commitTemplate(t, e.admin, "bobs", plains...)
	if got := e.repo.Pending("bob"); got != 0 {
		t.Fatalf("pending after a commit named them: %d", got)
	}
	if err := bob.Upload(ctx, batch(200, 8)); err != nil {
		t.Fatalf("upload after the quota was freed: %v", err)
	}
}

func TestCloneQuota(t *testing.T) {
	e, _ := newBadgerEnv(t, func(c *repo.Config) { c.CloneQuota = 10 * blockstore.DefaultBlockSize })
	ctx := context.Background()
	if _, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "xp", Dir: writeTree(t)}); err != nil {
		t.Fatal(err)
	}
	bob, _ := e.user(t, "bob")
	// The template's blocks are not bob's: a clone costs its own block.
	if _, err := clones.Create(ctx, bob, "xp", 0, "lab1"); err != nil {
		t.Fatal(err)
	}
	var b []byte
	for i := range 9 {
		b = append(b, wholeRecord(randomBlock(500+uint64(i)))...)
	}
	if err := bob.Upload(ctx, b); err != nil {
		t.Fatalf("up to the quota: %v", err)
	}
	err := bob.Upload(ctx, wholeRecord(randomBlock(600)))
	if statusOf(err) != http.StatusInsufficientStorage || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("upload over the clone quota: %v, want 507 naming the quota", err)
	}
	// Removing the clone frees its block once collected.
	if err := bob.RemoveClone(ctx, "lab1"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if err := bob.Upload(ctx, wholeRecord(randomBlock(600))); err != nil {
		t.Fatalf("upload after freeing a block: %v", err)
	}
}

func TestGCLoopCollectsExpiredUploads(t *testing.T) {
	var clock atomic.Int64
	clock.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	e, st := newBadgerEnv(t, func(c *repo.Config) {
		c.Now = func() time.Time { return time.Unix(0, clock.Load()) }
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	t.Cleanup(func() { cancel(); <-done })
	bob, _ := e.user(t, "bob")

	kept, lost := randomBlock(800), randomBlock(801)
	if err := bob.Upload(ctx, append(wholeRecord(kept), wholeRecord(lost)...)); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	commitTemplate(t, e.admin, "keep", kept)
	go func() { defer close(done); e.repo.GCLoop(ctx, 5*time.Millisecond) }()
	// Within the grace, the loop keeps the upload.
	clock.Add(int64(30 * time.Minute))
	ids := []blockstore.ID{blockstore.Sum(kept), blockstore.Sum(lost)}
	for range 20 {
		// Enough ticks to have run a few times: none may take it.
		time.Sleep(10 * time.Millisecond)
		if m, _ := st.Missing(ctx, ids); len(m) != 0 {
			t.Fatalf("the loop took %v within the grace", m)
		}
	}
	clock.Add(int64(time.Hour))
	deadline := time.Now().Add(time.Minute)
	for {
		m, err := st.Missing(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		if len(m) == 1 && m[0] == ids[1] {
			break
		}
		if len(m) > 1 || time.Now().After(deadline) {
			t.Fatalf("missing %v, want only the unreferenced upload gone", m)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if p := e.repo.Pending("bob"); p != 0 {
		t.Fatalf("bob's pending bytes after the collection: %d", p)
	}
}

func TestSnapshotNamedInfoIsNoClone(t *testing.T) {
	_, alice, _, _ := labEnv(t)
	ctx := context.Background()
	for _, snap := range []string{"info", "g", "lease", "v"} {
		if _, err := alice.Snapshot(ctx, "lab1", snap); err != nil {
			t.Fatalf("snapshot %q: %v", snap, err)
		}
	}
	list, err := alice.Clones(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].Name != "lab1" {
		t.Fatalf("clones after snapshots named like records: %+v", list)
	}
}

// TestNamesLikeKeyPartsKeepGC: a user's clone named "g" (or a user, or a
// template, named "g" or "v") once failed every collection.
func TestNamesLikeKeyPartsKeepGC(t *testing.T) {
	e, alice, _, _ := labEnv(t)
	ctx := context.Background()
	if _, err := clones.Create(ctx, alice, "xp", 0, "g"); err != nil {
		t.Fatal(err)
	}
	g, _ := e.user(t, "g")
	if _, err := clones.Create(ctx, g, "xp", 0, "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "v", Dir: writeTree(t)}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.admin.GC(ctx); err != nil {
		t.Fatalf("gc with clones and templates named g and v: %v", err)
	}
}

// TestRoutesValidateNames sends every clone route for a clone that does
// not exist, with a bad name, and as another user, and checks the status
// and that no record appears.
func TestRoutesValidateNames(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "xp", Dir: writeTree(t)}); err != nil {
		t.Fatal(err)
	}
	alice, aliceToken := e.user(t, "alice")
	_, bobToken := e.user(t, "bob")
	if _, err := clones.Create(ctx, alice, "xp", 0, "lab1"); err != nil {
		t.Fatal(err)
	}
	lease, err := alice.AcquireLease(ctx, "lab1", "ws1", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Snapshot(ctx, "lab1", "s1"); err != nil {
		t.Fatal(err)
	}
	keys := func() []string {
		var out []string
		e.store.ListMeta(ctx, "cln/", func(k string, _ []byte) error { out = append(out, k); return nil })
		return out
	}
	before := keys()
	snap, _ := json.Marshal(api.SnapshotRequest{Name: "s2"})
	leaseReq, _ := json.Marshal(api.LeaseRequest{Holder: "ws2", TTL: 60})
	revert, _ := json.Marshal(api.RevertRequest{Snapshot: "s1", Holder: "ws2"})
	routes := []struct {
		method, path string
		body         []byte
	}{
		{"GET", "/v1/clones/NAME", nil},
		{"DELETE", "/v1/clones/NAME", nil},
		{"GET", "/v1/clones/NAME/signed", nil},
		{"POST", "/v1/clones/NAME/lease", leaseReq},
		{"DELETE", "/v1/clones/NAME/lease?holder=ws1&epoch=1", nil},
		{"DELETE", "/v1/clones/NAME/lease?holder=&epoch=0", nil},
		{"GET", "/v1/clones/NAME/generations/1/signed", nil},
		{"POST", "/v1/clones/NAME/snapshots", snap},
		{"POST", "/v1/clones/NAME/revert", revert},
		{"GET", "/v1/clones/NAME/history", nil},
	}
	for _, rt := range routes {
		for _, tc := range []struct {
			who, token, name string
			want             int
		}{
			{"alice", aliceToken, "ghost1", http.StatusNotFound},
			{"bob", bobToken, "lab1", http.StatusNotFound}, // alice's: not bob's to see
			{"alice", aliceToken, ".hidden", http.StatusBadRequest},
			{"alice", aliceToken, "a@1", http.StatusBadRequest},
		} {
			path := strings.Replace(rt.path, "NAME", tc.name, 1)
			if got, body := e.call(t, tc.token, rt.method, path, rt.body); got != tc.want {
				t.Errorf("%s %s %s: %d %s, want %d", tc.who, rt.method, path, got, body, tc.want)
			}
		}
	}
	if after := keys(); !slicesEqual(before, after) {
		t.Fatalf("records changed by refused requests:\nbefore %q\nafter  %q", before, after)
	}
	// Snapshot names are checked like clone names.
	for _, bad := range []string{"", "..", "a/b", ".x"} {
		b, _ := json.Marshal(api.SnapshotRequest{Name: bad})
		if got, body := e.call(t, aliceToken, "POST", "/v1/clones/lab1/snapshots", b); got != http.StatusBadRequest {
			t.Errorf("snapshot %q: %d %s", bad, got, body)
		}
	}
	// Alice's own lease is untouched by all of that.
	if _, err := alice.AcquireLease(ctx, "lab1", "ws1", time.Minute, false); err != nil {
		t.Fatalf("alice renews her lease: %v", err)
	}
	if err := alice.ReleaseLease(ctx, "lab1", "ws1", lease.Epoch); err != nil {
		t.Fatal(err)
	}
}

func slicesEqual(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestTokenNamesAreNoPaths(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for _, name := range []string{"../../../x", "..", ".", "a/b", "", "x\x00y", strings.Repeat("a", 65)} {
		if _, err := e.admin.CreateToken(ctx, name, api.RoleUser); statusOf(err) != http.StatusBadRequest {
			t.Errorf("token named %q: %v, want 400", name, err)
		}
	}
	if _, err := e.admin.CreateToken(ctx, "alice.smith@lab", api.RoleUser); err != nil {
		t.Fatal(err)
	}
	// A server that answers with such a name is not believed.
	evil := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(api.Principal{Name: "../../../x", Role: api.RoleUser})
	}))
	defer evil.Close()
	c, err := client.New(client.Config{Server: evil.URL, Token: "t"})
	if err != nil {
		t.Fatal(err)
	}
	if p, err := c.WhoAmI(ctx); err == nil {
		t.Fatalf("whoami from a server naming %q: no error", p.Name)
	}
}
