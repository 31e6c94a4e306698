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
	post := func(m []byte, dict []byte, parent string) int {
		enc, err := api.EncodeManifestDelta(m, dict)
		if err != nil {
			t.Fatal(err)
		}
		q := url.Values{"parent": {parent}, "epoch": {"1"}, "encoding": {api.ManifestEncodingParent}, "dict": {api.DictID(dict)}}
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+strings.Replace(api.PathCloneGenerations, "{name}", "lab", 1)+"?"+q.Encode(), bytes.NewReader(enc))
		req.Header.Set("Authorization", "Bearer "+tok.Token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
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
	// The client, told a wrong parent manifest, falls back to plain.
	next.Files[0].MTime = next.Files[0].MTime.Add(time.Hour)
	wrong := next
	wrong.Files = []manifest.File{{Path: "x", Mode: 0o644, Size: 1, Blocks: []blockstore.ID{blockstore.Sum([]byte("x"))}}}
	info, err := alice.CommitGeneration(ctx, &next, 2, l.Epoch, &wrong)
	if err != nil || info.Generation != 3 {
		t.Fatalf("commit with a wrong parent manifest: %+v, %v", info, err)
	}
	got, err := alice.GenerationManifest(ctx, "lab", 3)
	if err != nil || !got.Files[0].MTime.Equal(next.Files[0].MTime) {
		t.Fatalf("generation 3: %v", err)
	}
}
