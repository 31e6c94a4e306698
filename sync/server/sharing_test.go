package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/clones"
	"github.com/dvfs-project/dvfs/sync/publish"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
)

// Tests of access to other users' clones: admins list, read and remove
// any; members of a group a clone is shared with read and clone it;
// everyone else is refused with a clear error and a log line naming who
// asked for what. Quotas bound each user's clone data.

// courseEnv is a lab: template xp; alice, an instructor, with clone lab1;
// bob, a student in group cs101 (the server's own groups); carol, in no
// group. log holds the server's log.
type courseEnv struct {
	*env
	alice, bob, carol *client.Client
	tokens            map[string]string
	log               *logBuffer
}

func newCourseEnv(t *testing.T, opts ...func(*repo.Config)) *courseEnv {
	t.Helper()
	logs := &logBuffer{}
	groups := map[string][]string{"cs101": {"bob"}}
	if err := server.ValidGroups(groups); err != nil {
		t.Fatal(err)
	}
	scfg := server.Config{Groups: groups, Logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))}
	e := &courseEnv{env: newServerEnv(t, memstore.New(), scfg, opts...), tokens: map[string]string{}, log: logs}
	ctx := context.Background()
	if _, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "xp", Dir: writeTree(t)}); err != nil {
		t.Fatal(err)
	}
	e.alice, e.tokens["alice"] = e.user(t, "alice")
	e.bob, e.tokens["bob"] = e.user(t, "bob")
	e.carol, e.tokens["carol"] = e.user(t, "carol")
	if _, err := clones.Create(ctx, e.alice, "xp", 0, "lab1"); err != nil {
		t.Fatal(err)
	}
	return e
}

// refused checks that a request was refused with want, an error naming
// the caller and the owner, and a log line naming who asked for what.
func (e *courseEnv) refused(t *testing.T, who, method, path string, body []byte, want int, logParts ...string) {
	t.Helper()
	code, msg := e.call(t, e.tokens[who], method, path, body)
	if code != want {
		t.Errorf("%s %s %s: %d %s, want %d", who, method, path, code, msg, want)
		return
	}
	if !strings.Contains(msg, who) {
		t.Errorf("%s %s %s: the error does not name %s: %s", who, method, path, who, msg)
	}
	parts := append([]string{"principal=" + who}, logParts...)
	if len(e.log.lines(parts...)) == 0 {
		t.Errorf("%s %s %s: no log line with %q in:\n%s", who, method, path, parts, e.log)
	}
}

func TestOthersCloneRefused(t *testing.T) {
	e := newCourseEnv(t)
	ctx := context.Background()
	m, _, err := e.alice.CloneManifest(ctx, "lab1")
	if err != nil {
		t.Fatal(err)
	}
	mb, _ := m.MarshalBinary()
	lease := mustJSON(t, api.LeaseRequest{Holder: "ws1", TTL: 60})
	snap := mustJSON(t, api.SnapshotRequest{Name: "s1"})
	q := "?owner=alice"
	for _, tc := range []struct {
		what, method, path string
		body               []byte
		access             string
	}{
		{"read", "GET", "/v1/clones/lab1" + q, nil, "access=read"},
		{"read its manifest", "GET", "/v1/clones/lab1/signed" + q, nil, "access=read"},
		{"read its history", "GET", "/v1/clones/lab1/history" + q, nil, `access="read the history of"`},
		{"read a generation", "GET", "/v1/clones/lab1/generations/1/signed" + q, nil, `access="read the history of"`},
		{"list", "GET", "/v1/clones" + q, nil, `access="read the history of"`},
		{"take its lease", "POST", "/v1/clones/lab1/lease" + q, lease, "access=write"},
		{"commit", "POST", "/v1/clones/lab1/generations" + q + "&parent=1&epoch=1", mb, "access=write"},
		{"snapshot", "POST", "/v1/clones/lab1/snapshots" + q, snap, "access=write"},
		{"share", "PUT", "/v1/clones/lab1/shares/cs101" + q, nil, "access=write"},
		{"remove", "DELETE", "/v1/clones/lab1" + q, nil, "access=remove"},
	} {
		t.Run(tc.what, func(t *testing.T) {
			logParts := []string{"owner=alice", tc.access, "route="}
			if !strings.HasSuffix(strings.Split(tc.path, "?")[0], "/v1/clones") {
				logParts = append(logParts, "clone=lab1")
			}
			e.refused(t, "bob", tc.method, tc.path, tc.body, http.StatusForbidden, logParts...)
		})
	}
	if _, err := e.alice.Clone(ctx, "lab1"); err != nil {
		t.Fatalf("alice's clone after the refusals: %v", err)
	}
	if code, msg := e.call(t, e.tokens["bob"], "GET", "/v1/clones?all", nil); code != http.StatusForbidden || !strings.Contains(msg, "bob") {
		t.Errorf("bob lists every clone: %d %s", code, msg)
	}
	// A user may not read another's quota, nor set any.
	e.refused(t, "bob", "GET", "/v1/quotas/alice", nil, http.StatusForbidden, "user=alice")
	if code, msg := e.call(t, e.tokens["bob"], "PUT", "/v1/quotas/bob", []byte(`{"bytes":0}`)); code != http.StatusForbidden {
		t.Errorf("bob sets his own quota: %d %s", code, msg)
	}
}

func mustJSON(t *testing.T, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestUserPublishingRefused(t *testing.T) {
	e := newCourseEnv(t)
	m := &manifest.Manifest{Kind: manifest.KindTemplate, Name: "mine", BlockSize: blockstore.DefaultBlockSize}
	body, _ := m.MarshalBinary()
	code, msg := e.call(t, e.tokens["bob"], "POST", "/v1/templates/mine/versions", body)
	if code != http.StatusForbidden || !strings.Contains(msg, "admin") {
		t.Fatalf("bob publishes: %d %s, want 403 naming the admin role", code, msg)
	}
	if lines := e.log.lines("request failed", "status=403", "/v1/templates/mine/versions", "bob"); len(lines) == 0 {
		t.Errorf("no log line names bob's refused publish:\n%s", e.log)
	}
}

func TestAdminManagesAnyClone(t *testing.T) {
	e := newCourseEnv(t)
	ctx := context.Background()
	if _, err := clones.Create(ctx, e.bob, "xp", 0, "lab1"); err != nil {
		t.Fatal(err)
	}
	all, err := e.admin.AllClones(ctx)
	if err != nil || len(all) != 2 {
		t.Fatalf("every clone: %+v, %v", all, err)
	}
	if l, err := e.admin.ClonesOf(ctx, "alice"); err != nil || len(l) != 1 || l[0].Owner != "alice" {
		t.Fatalf("alice's clones, as the admin: %+v, %v", l, err)
	}
	if _, _, err := e.admin.CloneManifestOf(ctx, "alice", "lab1"); err != nil {
		t.Fatalf("the admin reads alice's clone: %v", err)
	}
	// A workstation of alice's holds the lease: removal goes on as when
	// alice removes it herself, and her workstation's next commit finds
	// the clone gone (it saves its changes as a new clone).
	l, err := e.alice.AcquireLease(ctx, "lab1", "ws1", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.admin.RemoveCloneOf(ctx, "alice", "lab1"); err != nil {
		t.Fatalf("the admin removes alice's clone: %v", err)
	}
	if lines := e.log.lines("clone removed", "principal=admin", "clone=lab1", "owner=alice"); len(lines) == 0 {
		t.Errorf("no log line of the removal:\n%s", e.log)
	}
	m, _, err := e.bob.CloneManifest(ctx, "lab1")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.alice.CommitGeneration(ctx, m, 1, l.Epoch, nil); statusOf(err) != http.StatusPreconditionFailed {
		t.Fatalf("alice's workstation commits to the removed clone: %v, want 412", err)
	}
	if _, err := e.alice.AcquireLease(ctx, "lab1", "ws1", time.Minute, false); !client.IsNotFound(err) {
		t.Fatalf("alice's workstation renews its lease of the removed clone: %v, want not found", err)
	}
	if l, _ := e.bob.Clones(ctx); len(l) != 1 {
		t.Fatalf("bob's clone went too: %+v", l)
	}
	if err := e.admin.RemoveCloneOf(ctx, "alice", "lab1"); !client.IsNotFound(err) {
		t.Fatalf("removing it again: %v", err)
	}
}

func TestSharedClone(t *testing.T) {
	e := newCourseEnv(t)
	ctx := context.Background()
	id, plain := privateBlock(t, e.alice)
	if p, err := e.bob.WhoAmI(ctx); err != nil || len(p.Groups) != 1 || p.Groups[0] != "cs101" {
		t.Fatalf("bob's principal: %+v, %v; want his group cs101", p, err)
	}
	info, err := e.alice.Share(ctx, "lab1", "cs101", true)
	if err != nil || len(info.Shared) != 1 || info.Shared[0] != "cs101" {
		t.Fatalf("share: %+v, %v", info, err)
	}
	// bob, in cs101, sees it, reads it and its blocks, and clones it.
	list, err := e.bob.SharedClones(ctx)
	if err != nil || len(list) != 1 || list[0].Owner != "alice" || list[0].Name != "lab1" {
		t.Fatalf("shared with bob: %+v, %v", list, err)
	}
	if _, _, err := e.bob.CloneManifestOf(ctx, "alice", "lab1"); err != nil {
		t.Fatalf("bob reads the shared clone: %v", err)
	}
	fetchPlain(t, e.bob, plain)
	mine, err := clones.CreateFrom(ctx, e.bob, "alice", "lab1", "copy")
	if err != nil {
		t.Fatalf("bob clones the shared clone: %v", err)
	}
	if mine.Owner != "bob" || mine.Template != "xp" || mine.Source != "alice/lab1@1" {
		t.Fatalf("bob's clone: %+v", mine)
	}
	// Read-only: bob writes nothing of alice's.
	lease := mustJSON(t, api.LeaseRequest{Holder: "ws1", TTL: 60})
	e.refused(t, "bob", "POST", "/v1/clones/lab1/lease?owner=alice", lease, http.StatusForbidden, "owner=alice", "access=write")
	e.refused(t, "bob", "DELETE", "/v1/clones/lab1/shares/cs101?owner=alice", nil, http.StatusForbidden, "owner=alice", "access=write")
	e.refused(t, "bob", "GET", "/v1/clones/lab1/history?owner=alice", nil, http.StatusForbidden, "owner=alice")

	// carol, in no group, is refused all of it.
	if l, err := e.carol.SharedClones(ctx); err != nil || len(l) != 0 {
		t.Fatalf("shared with carol: %+v, %v", l, err)
	}
	e.refused(t, "carol", "GET", "/v1/clones/lab1/signed?owner=alice", nil, http.StatusForbidden, "owner=alice", "clone=lab1", "access=read")
	if err := e.carol.Fetch(ctx, []blockstore.ID{id}, func(blockstore.ID, []byte) error { return nil }); !client.IsNotFound(err) {
		t.Fatalf("carol fetched a block of the shared clone: %v", err)
	}
	if _, err := clones.CreateFrom(ctx, e.carol, "alice", "lab1", "copy"); statusOf(err) != http.StatusForbidden {
		t.Fatalf("carol clones the shared clone: %v, want 403", err)
	}

	// A generation alice commits is bob's to read at once.
	l, err := e.alice.AcquireLease(ctx, "lab1", "ws1", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	fresh := randomBlock(4242)
	if err := e.alice.Upload(ctx, wholeRecord(fresh)); err != nil {
		t.Fatal(err)
	}
	m, _, _ := e.alice.CloneManifest(ctx, "lab1")
	m.Files = append(m.Files, manifest.File{Path: "zz-new.bin", Mode: 0o644, MTime: time.Unix(1, 0), Size: int64(len(fresh)), Blocks: []blockstore.ID{blockstore.Sum(fresh)}})
	if _, err := e.alice.CommitGeneration(ctx, m, 1, l.Epoch, nil); err != nil {
		t.Fatal(err)
	}
	fetchPlain(t, e.bob, fresh)

	// Unshared: refused again, except what bob's own clone holds.
	if _, err := e.alice.Share(ctx, "lab1", "cs101", false); err != nil {
		t.Fatal(err)
	}
	e.refused(t, "bob", "GET", "/v1/clones/lab1/signed?owner=alice", nil, http.StatusForbidden, "owner=alice", "access=read")
	if err := e.bob.Fetch(ctx, []blockstore.ID{blockstore.Sum(fresh)}, func(blockstore.ID, []byte) error { return nil }); !client.IsNotFound(err) {
		t.Fatalf("bob fetched a block of a clone no longer shared: %v", err)
	}
	if err := e.bob.Fetch(ctx, []blockstore.ID{id}, func(blockstore.ID, []byte) error { return nil }); !client.IsNotFound(err) {
		t.Fatalf("bob fetched alice's .vmx (his clone has its own) after unsharing: %v", err)
	}
	if _, _, err := e.bob.CloneManifest(ctx, "copy"); err != nil {
		t.Fatalf("bob's own clone after unsharing: %v", err)
	}
	if l, _ := e.bob.SharedClones(ctx); len(l) != 0 {
		t.Fatalf("shared with bob after unsharing: %+v", l)
	}
}

func TestUserQuota(t *testing.T) {
	e := newCourseEnv(t, func(c *repo.Config) { c.CloneQuota = 100 * blockstore.DefaultBlockSize })
	ctx := context.Background()
	q, err := e.bob.Quota(ctx, "bob")
	if err != nil || q.Quota != 100*blockstore.DefaultBlockSize || !q.Default || q.Used != 0 {
		t.Fatalf("bob's quota at first: %+v, %v", q, err)
	}
	if q, err = e.admin.SetQuota(ctx, "bob", api.QuotaRequest{Bytes: 4 * blockstore.DefaultBlockSize}); err != nil || q.Default || q.Quota != 4*blockstore.DefaultBlockSize {
		t.Fatalf("set: %+v, %v", q, err)
	}
	batch := func(seed uint64, n int) []byte {
		var b []byte
		for i := range n {
			b = append(b, wholeRecord(randomBlock(seed+uint64(i)))...)
		}
		return b
	}
	if err := e.bob.Upload(ctx, batch(100, 4)); err != nil {
		t.Fatalf("up to the quota: %v", err)
	}
	err = e.bob.Upload(ctx, batch(200, 1))
	if statusOf(err) != http.StatusInsufficientStorage || !strings.Contains(err.Error(), "quota") || !strings.Contains(err.Error(), "bob") {
		t.Fatalf("over the quota: %v, want 507 naming bob's quota", err)
	}
	if lines := e.log.lines("request failed", "status=507", "bob", "quota"); len(lines) == 0 {
		t.Errorf("no log line of the refused upload:\n%s", e.log)
	}
	if q, _ := e.bob.Quota(ctx, "bob"); q.Used != 4*blockstore.DefaultBlockSize {
		t.Fatalf("bob's usage: %+v", q)
	}
	// Others are on the default still.
	if err := e.carol.Upload(ctx, batch(200, 5)); err != nil {
		t.Fatalf("carol, on the default quota: %v", err)
	}
	// A commit that would take bob past it is refused too: a clone of
	// a shared clone naming blocks his data does not hold yet.
	if err := e.alice.Upload(ctx, batch(300, 3)); err != nil {
		t.Fatal(err)
	}
	l, err := e.alice.AcquireLease(ctx, "lab1", "ws1", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	m, _, _ := e.alice.CloneManifest(ctx, "lab1")
	for i := range 3 {
		p := randomBlock(300 + uint64(i))
		m.Files = append(m.Files, manifest.File{Path: fmt.Sprintf("zz-f%d", i), Mode: 0o644, MTime: time.Unix(1, 0), Size: int64(len(p)), Blocks: []blockstore.ID{blockstore.Sum(p)}})
	}
	if _, err := e.alice.CommitGeneration(ctx, m, 1, l.Epoch, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := e.alice.Share(ctx, "lab1", "cs101", true); err != nil {
		t.Fatal(err)
	}
	if _, err := clones.CreateFrom(ctx, e.bob, "alice", "lab1", "copy"); statusOf(err) != http.StatusInsufficientStorage || !strings.Contains(err.Error(), "quota") {
		t.Fatalf("a clone over the quota: %v, want 507", err)
	}
	// The admin raises it: both go through.
	if _, err := e.admin.SetQuota(ctx, "bob", api.QuotaRequest{Bytes: 20 * blockstore.DefaultBlockSize}); err != nil {
		t.Fatal(err)
	}
	if err := e.bob.Upload(ctx, batch(200, 1)); err != nil {
		t.Fatalf("after the admin raised the quota: %v", err)
	}
	if _, err := clones.CreateFrom(ctx, e.bob, "alice", "lab1", "copy"); err != nil {
		t.Fatalf("a clone after the admin raised the quota: %v", err)
	}
	if q, err := e.admin.SetQuota(ctx, "bob", api.QuotaRequest{Default: true}); err != nil || !q.Default || q.Quota != 100*blockstore.DefaultBlockSize {
		t.Fatalf("back to the default: %+v, %v", q, err)
	}
}
