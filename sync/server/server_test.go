package server_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/binary"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/export"
	"github.com/dvfs-project/dvfs/sync/publish"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
)

type env struct {
	srv   *httptest.Server
	repo  *repo.Repo
	store *memstore.Store
	admin *client.Client
	token string
	h     *server.Server
}

func newEnv(t *testing.T) *env {
	t.Helper()
	st := memstore.New()
	e := newEnvOn(t, st)
	e.store = st
	return e
}

// newEnvOn serves a repository over st; env.store stays nil.
func newEnvOn(t testing.TB, st repo.Store, opts ...func(*repo.Config)) *env {
	t.Helper()
	return newServerEnv(t, st, server.Config{}, opts...)
}

// newServerEnv is newEnvOn with the server configured as scfg (its Repo
// set here).
func newServerEnv(t testing.TB, st repo.Store, scfg server.Config, opts ...func(*repo.Config)) *env {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	cfg := repo.Config{Store: st, Key: key}
	for _, o := range opts {
		o(&cfg)
	}
	r, err := repo.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := disktest.TempDir(t)
	if _, err := server.EnsureAdminToken(context.Background(), r, dir); err != nil {
		t.Fatal(err)
	}
	tok, _ := os.ReadFile(filepath.Join(dir, server.AdminTokenFile))
	scfg.Repo = r
	h := server.New(scfg)
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	e := &env{srv: srv, repo: r, token: strings.TrimSpace(string(tok)), h: h}
	e.admin, err = client.New(client.Config{Server: srv.URL, Token: e.token, ServerKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	return e
}

// settle waits until the server has stored every upload it answered
// (it stores them in the background; a commit waits the same way).
func (e *env) settle(t *testing.T) {
	t.Helper()
	if err := e.repo.Settle(context.Background()); err != nil {
		t.Fatal(err)
	}
}

// exportSame exports version v of template name and checks that each of
// files reads as it does in src; it returns the export's directory.
func (e *env) exportSame(t *testing.T, name string, v uint64, src string, files ...string) string {
	t.Helper()
	ctx := context.Background()
	m, _, err := e.admin.Manifest(ctx, name, v)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(disktest.TempDir(t), "out")
	if err := export.Export(ctx, e.admin, m, out); err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		a, _ := os.ReadFile(filepath.Join(src, f))
		b, _ := os.ReadFile(filepath.Join(out, f))
		if !bytes.Equal(a, b) {
			t.Errorf("%s differs after export", f)
		}
	}
	return out
}

func writeTree(t *testing.T) string {
	t.Helper()
	dir := disktest.TempDir(t)
	os.MkdirAll(filepath.Join(dir, "xp.vmdk.lck"), 0o755)
	os.WriteFile(filepath.Join(dir, "xp.vmx"), []byte("displayName = \"xp\"\n"), 0o644)
	link := filepath.Join(dir, "link.vmx")
	err := os.Symlink("xp.vmx", link)
	if err == nil {
		_, err = os.Lstat(link)
	}
	if err != nil {
		if runtime.GOOS != "windows" {
			t.Fatal(err)
		}
		// Windows lets only some users make symlinks; Wine 8 says it
		// made one and makes none.
		t.Logf("the tree has no symlink: %v", err)
	}
	f, _ := os.Create(filepath.Join(dir, "xp.vmdk"))
	f.Truncate(3<<20 + 1234) // sparse, with a short last block
	f.WriteAt(bytes.Repeat([]byte("guest data "), 20000), 1<<20)
	f.WriteAt(bytes.Repeat([]byte{0}, 64<<10), 2<<20) // written zeros: a hole too
	f.WriteAt([]byte("tail"), 3<<20+1000)
	f.Close()
	return dir
}

func TestPublishExportRoundTrip(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	src := writeTree(t)
	res, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "xp", Dir: src})
	if err != nil {
		t.Fatal(err)
	}
	if res.Info.Version != 1 || res.NewBlocks == 0 || res.HoleBlocks == 0 {
		t.Fatalf("result %+v", res)
	}
	again, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "xp", Dir: src})
	if err != nil {
		t.Fatal(err)
	}
	if again.NewBlocks != 0 || again.SentBytes != 0 || again.Info.Version != 2 {
		t.Fatalf("republishing an unchanged tree sent data: %+v", again)
	}
	out := e.exportSame(t, "xp", 1, src, "xp.vmx", "xp.vmdk")
	if _, err := os.Lstat(filepath.Join(src, "link.vmx")); err == nil {
		if target, _ := os.Readlink(filepath.Join(out, "link.vmx")); target != "xp.vmx" {
			t.Errorf("symlink target %q", target)
		}
	}
	if st, err := os.Stat(filepath.Join(out, "xp.vmdk.lck")); err != nil || !st.IsDir() {
		t.Errorf("directory not exported: %v", err)
	}
}

// A client that pins another key refuses the server's manifests.
func TestForeignKeyRefused(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "xp", Dir: writeTree(t)}); err != nil {
		t.Fatal(err)
	}
	other, _, _ := ed25519.GenerateKey(nil)
	c, _ := client.New(client.Config{Server: e.srv.URL, Token: e.token, ServerKey: other})
	if _, _, err := c.Manifest(ctx, "xp", 0); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("manifest under a foreign key: %v", err)
	}
}

func TestUploadRefusesForgedBlock(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	id := blockstore.Sum([]byte("what the id says"))
	batch := api.AppendBlock(nil, id, blockstore.Encode(nil, []byte("something else")))
	err := e.admin.Upload(ctx, batch)
	var he *client.HTTPError
	if !errors.As(err, &he) || he.Status != http.StatusUnprocessableEntity {
		t.Fatalf("forged upload: %v", err)
	}
	e.settle(t)
	if missing, _ := e.store.Missing(ctx, []blockstore.ID{id}); len(missing) != 1 {
		t.Fatal("forged block was stored")
	}
}

func TestFetchVerifiesAndDetectsCorruption(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	plain := bytes.Repeat([]byte("block"), 1000)
	id := blockstore.Sum(plain)
	if err := e.admin.Upload(ctx, api.AppendBlock(nil, id, blockstore.Encode(nil, plain))); err != nil {
		t.Fatal(err)
	}
	e.settle(t)
	var got []byte
	if err := e.admin.Fetch(ctx, []blockstore.ID{id}, func(_ blockstore.ID, p []byte) error {
		got = append([]byte(nil), p...)
		return nil
	}); err != nil || !bytes.Equal(got, plain) {
		t.Fatalf("fetch: %v", err)
	}
	e.store.Corrupt(id)
	err := e.admin.Fetch(ctx, []blockstore.ID{id}, func(blockstore.ID, []byte) error {
		t.Fatal("corrupt block handed out")
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "corrupt") {
		t.Fatalf("corrupt block: %v", err)
	}
}

func TestBadRequests(t *testing.T) {
	e := newEnv(t)
	post := func(path string, body io.Reader) int {
		req, _ := http.NewRequest(http.MethodPost, e.srv.URL+path, body)
		req.Header.Set("Authorization", "Bearer "+e.token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	cases := []struct {
		name string
		path string
		body io.Reader
		want int
	}{
		{"ragged id list", api.PathMissing, bytes.NewReader(make([]byte, 33)), 400},
		{"too many ids", api.PathMissing, bytes.NewReader(make([]byte, 32*(api.MaxIDsPerRequest+1))), 413},
		{"truncated batch", api.PathUpload, bytes.NewReader(make([]byte, 40)), 400},
		{"huge upload", api.PathUpload, io.LimitReader(zeros{}, api.MaxUploadBytes+1), 413},
		{"garbage manifest", "/v1/templates/xp/versions", strings.NewReader("not a manifest"), 400},
		{"bad template name", "/v1/templates/.hidden/versions", strings.NewReader(""), 400},
		{"unknown block", api.PathFetch, bytes.NewReader(make([]byte, 32)), 404},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := post(c.path, c.body); got != c.want {
				t.Fatalf("status %d, want %d", got, c.want)
			}
		})
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestUploadInPieces sends batches far larger than the pieces the server
// checks them in: every block of a good one is stored; a forged block in
// the middle of one, or a batch cut short, stores none of it.
func TestUploadInPieces(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	r := rand.New(rand.NewPCG(7, 8))
	batch := func(n int) ([]byte, []blockstore.ID) {
		var b []byte
		var ids []blockstore.ID
		for range n {
			plain := make([]byte, blockstore.DefaultBlockSize)
			for i := 0; i < len(plain); i += 8 {
				binary.LittleEndian.PutUint64(plain[i:], r.Uint64())
			}
			id := blockstore.Sum(plain)
			b = api.AppendDeferredBlock(b, id, plain)
			ids = append(ids, id)
		}
		return b, ids
	}
	missing := func(ids []blockstore.ID) int {
		e.settle(t)
		m, err := e.store.Missing(ctx, ids)
		if err != nil {
			t.Fatal(err)
		}
		return len(m)
	}
	good, ids := batch(100)
	if err := e.admin.Upload(ctx, good); err != nil {
		t.Fatal(err)
	}
	if n := missing(ids); n != 0 {
		t.Fatalf("%d of %d blocks missing after a good upload", n, len(ids))
	}

	forged, ids := batch(100)
	// Flip a byte in the middle of block 60's plain bytes.
	forged[60*(len(forged)/100)+blockstore.DefaultBlockSize/2] ^= 1
	var he *client.HTTPError
	if err := e.admin.Upload(ctx, forged); !errors.As(err, &he) || he.Status != http.StatusUnprocessableEntity {
		t.Fatalf("batch with a forged block: %v", err)
	}
	if n := missing(ids); n != len(ids) {
		t.Fatalf("after a refused batch, %d of its %d blocks were stored", len(ids)-n, len(ids))
	}

	short, ids := batch(50)
	if err := e.admin.Upload(ctx, short[:len(short)-100]); !errors.As(err, &he) || he.Status != http.StatusBadRequest {
		t.Fatalf("batch cut short: %v", err)
	}
	if n := missing(ids); n != len(ids) {
		t.Fatalf("after a batch cut short, %d of its %d blocks were stored", len(ids)-n, len(ids))
	}
	// The connection is still usable afterwards.
	if err := e.admin.Upload(ctx, good); err != nil {
		t.Fatal(err)
	}
}

// TestDeferredUploadLandsAligned publishes uncompressed into a server on
// the embedded store writing with O_DIRECT: the publisher pads its
// records so that each whole block arrives on a 4 KiB boundary of the
// upload buffer, and the store writes it from there, copying only the
// short last block of a file into an aligned buffer.
func TestDeferredUploadLandsAligned(t *testing.T) {
	st, err := badgerstore.Open(disktest.TempDir(t), badgerstore.Config{DirectWrites: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	e := newEnvOn(t, st)

	src := disktest.TempDir(t)
	data := make([]byte, 8<<20+5000) // 128 whole blocks and a short one
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i+8 <= len(data); i += 8 {
		binary.LittleEndian.PutUint64(data[i:], rng.Uint64())
	}
	if err := os.WriteFile(filepath.Join(src, "disk-flat.vmdk"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	res, err := publish.Publish(t.Context(), publish.Config{Server: e.admin, Name: "xp", Dir: src, Deferred: true})
	if err != nil {
		t.Fatal(err)
	}
	stats := st.Stats()
	if !stats.DirectWrites {
		if runtime.GOOS != "linux" {
			t.Skip("O_DIRECT is Linux's here (diskio.OpenDirect): nothing is staged either way")
		}
		if os.Getenv("CI") != "" {
			t.Fatal("CI's temporary directory takes no O_DIRECT")
		}
		t.Skip("the temporary directory takes no O_DIRECT, so nothing is staged either way (set CI to make this a failure)")
	}
	if want := int64(8192); res.NewBlocks != 129 || stats.StagedBytes != want {
		t.Fatalf("%d new blocks, %d bytes staged; want 129 blocks and only the short one's %d", res.NewBlocks, stats.StagedBytes, want)
	}
}
