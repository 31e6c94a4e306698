package server_test

import (
	"bytes"
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/clones"
	"github.com/dvfs-project/dvfs/sync/publish"
)

// TestCommitManifestDelta: a generation's manifest sent compressed
// against its parent's block IDs commits; one compressed against another
// dictionary is refused with 422, and the client then sends it plain.
func TestCommitManifestDelta(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "xp", Dir: writeTree(t)}); err != nil {
		t.Fatal(err)
	}
	tok, err := e.admin.CreateToken(ctx, "alice", "user")
	if err != nil {
		t.Fatal(err)
	}
	alice, _ := client.New(client.Config{Server: e.srv.URL, Token: tok.Token})
	if _, err := clones.Create(ctx, alice, "xp", 0, "lab"); err != nil {
		t.Fatal(err)
	}
	l, err := alice.AcquireLease(ctx, "lab", "ws1", time.Minute, false)
	if err != nil {
		t.Fatal(err)
	}
	gen1, _, err := alice.CloneManifest(ctx, "lab")
	if err != nil {
		t.Fatal(err)
	}
	send := func(enc []byte, q url.Values) int {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+strings.Replace(api.PathCloneGenerations, "{name}", "lab", 1)+"?"+q.Encode(), bytes.NewReader(enc))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	post := func(m []byte, dict []byte, parent string) int {
		enc, err := api.EncodeManifestDelta(m, dict)
		if err != nil {
			t.Fatal(err)
		}
		return send(enc, url.Values{"parent": {parent}, "epoch": {"1"}, "encoding": {api.ManifestEncodingParent}, "dict": {api.DictID(dict)}})
	}
	postXOR := func(m *manifest.Manifest, over *manifest.Manifest, parent string) int {
		body, err := m.MarshalBinary()
		if err != nil {
			t.Fatal(err)
		}
		enc, err := api.EncodeManifestXOR(m, body, over)
		if err != nil {
			t.Fatal(err)
		}
		return send(enc, url.Values{"parent": {parent}, "epoch": {"1"}, "encoding": {api.ManifestEncodingXOR}})
	}
	next := *gen1
	next.Files = append(next.Files[:0:0], gen1.Files...)
	next.Files[0].MTime = next.Files[0].MTime.Add(time.Hour)
	body, err := next.MarshalBinary()
	if err != nil {
		t.Fatal(err)
	}
	if l.Epoch != 1 {
		t.Fatalf("epoch %d", l.Epoch)
	}
	if st := post(body, append(api.ManifestDict(gen1), 1), "1"); st != http.StatusUnprocessableEntity {
		t.Fatalf("another dictionary: status %d, want 422", st)
	}
	if st := post(body, api.ManifestDict(gen1), "1"); st != http.StatusCreated {
		t.Fatalf("the parent's dictionary: status %d, want 201", st)
	}
	// The XOR delta: over the parent's manifest it commits; over another
	// it rebuilds a manifest that is not the one sent, refused with 400.
	gen2, err := alice.GenerationManifest(ctx, "lab", 2)
	if err != nil {
		t.Fatal(err)
	}
	next.Files[0].MTime = next.Files[0].MTime.Add(time.Hour)
	wrong := next
	wrong.Files = []manifest.File{{Path: next.Files[0].Path, Mode: 0o644, Size: 1, Blocks: []blockstore.ID{blockstore.Sum([]byte("x"))}}}
	if st := postXOR(&next, &wrong, "2"); st != http.StatusBadRequest {
		t.Fatalf("XOR over another manifest: status %d, want 400", st)
	}
	if st := postXOR(&next, gen2, "2"); st != http.StatusCreated {
		t.Fatalf("XOR over the parent: status %d, want 201", st)
	}
	// The client, told a wrong parent manifest, falls back to plain.
	next.Files[0].MTime = next.Files[0].MTime.Add(time.Hour)
	info, err := alice.CommitGeneration(ctx, &next, 3, l.Epoch, &wrong)
	if err != nil || info.Generation != 4 {
		t.Fatalf("commit with a wrong parent manifest: %+v, %v", info, err)
	}
	got, err := alice.GenerationManifest(ctx, "lab", 4)
	if err != nil || !got.Files[0].MTime.Equal(next.Files[0].MTime) {
		t.Fatalf("generation 4: %v", err)
	}
}
