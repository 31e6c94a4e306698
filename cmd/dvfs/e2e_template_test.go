//go:build linux

package main

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/sync/api"
)

var newBlocksRE = regexp.MustCompile(`new:\s+(\d+) blocks`)

func newBlocks(t *testing.T, out string) int {
	t.Helper()
	m := newBlocksRE.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no summary in publish output:\n%s", out)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// A second version that differs by one 4 KiB write costs at most two
// blocks: the write straddles a block boundary here, the worst case.
func TestPublishIncremental(t *testing.T) {
	t.Parallel()
	s := startServer(t, t.TempDir())
	vm := filepath.Join(t.TempDir(), "winxp")
	os.Mkdir(vm, 0o755)
	os.WriteFile(filepath.Join(vm, "winxp.vmx"), []byte("displayName = \"winxp\"\nmemsize = \"512\"\n"), 0o644)
	disk := filepath.Join(vm, "winxp.vmdk")
	writeVMDisk(t, disk, 1<<30, 1)

	out := s.dvfs("template", "publish", "--name", "winxp", vm)
	first := newBlocks(t, out)
	t.Logf("first publish:\n%s", out)
	// The server is on this machine: the blocks went uncompressed, and
	// the server compresses them once uploads stop.
	if !strings.Contains(out, "sent uncompressed") {
		t.Fatalf("a publish to a server on loopback compressed its blocks:\n%s", out)
	}
	s.waitCompressed(1)
	// Badger preallocates its files while open; measure with it closed.
	s.stop(syscall.SIGTERM)
	before := diskUse(t, filepath.Join(s.data, "store"))
	s = startServer(t, s.data)

	// Overwrite 4 KiB across the boundary of blocks 100 and 101, in a
	// region that holds data.
	f, err := os.OpenFile(disk, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	patch := bytes.Repeat([]byte{0xA5, 0x5A}, 2048)
	off := int64(512<<20) + 64<<10*101 - 2048
	if _, err := f.WriteAt(patch, off); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out = s.dvfs("template", "publish", "--name", "winxp", vm)
	t.Logf("second publish:\n%s", out)
	if n := newBlocks(t, out); n > 2 || n == 0 {
		t.Fatalf("second publish uploaded %d new blocks, want 1 or 2", n)
	}
	s.waitCompressed(1)
	s.stop(syscall.SIGTERM)
	after := diskUse(t, filepath.Join(s.data, "store"))
	s = startServer(t, s.data)
	// The second version costs its new blocks plus its own manifest (32
	// bytes per block of the 1 GiB disk: 512 KiB) and its records.
	t.Logf("first publish: %d new blocks; server disk use %d bytes, grew by %d bytes for the second (two blocks are %d bytes)", first, before, after-before, 2*64<<10)
	if grow := after - before; grow > 4<<20 {
		t.Fatalf("server disk use grew by %d bytes for a one-write version", grow)
	}

	list := s.dvfs("template", "list")
	if !regexp.MustCompile(`(?m)^winxp\s+1\s`).MatchString(list) || !regexp.MustCompile(`(?m)^winxp\s+2\s`).MatchString(list) {
		t.Fatalf("both versions should be listed:\n%s", list)
	}
	// Each version exports byte-exact: v2 is the patched tree.
	exp := filepath.Join(t.TempDir(), "v2")
	s.dvfs("template", "export", "winxp@2", exp)
	sameTree(t, vm, exp)
	if !strings.Contains(s.dvfs("template", "show", "winxp@1"), "winxp.vmdk") {
		t.Fatal("show does not list the disk")
	}
}

// A server killed in the middle of a publish leaves no version behind, and
// the rerun sends only what the server still lacks.
//
// The publish goes through a proxy that stops forwarding upload bytes
// after 200 MiB of the 340 MiB of data, so the server is always killed
// mid-publish, however fast this machine is; it is killed once some
// uploads were answered. The server stores what it answered within its
// intake's bound (repo.Accept queues 32 MiB at most), so by then most of
// the 200 MiB is stored, and the rerun reuses it.
func TestPublishSurvivesServerKill(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	s := startServer(t, data)
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	writeVMDisk(t, filepath.Join(vm, "disk.vmdk"), 512<<20, 2)

	g := newUploadGate(t, s.url, 200<<20)
	via := *s
	via.url = g.url
	pub := make(chan error, 1)
	var pubOut string
	go func() {
		var err error
		pubOut, err = via.try("template", "publish", "--name", "vm", vm)
		pub <- err
	}()
	deadline := time.After(2 * time.Minute)
	for !g.holding() || g.answered.Load() < 3 {
		select {
		case err := <-pub:
			t.Fatalf("publish finished before the kill (err %v); %d upload bytes forwarded:\n%s\nserver log:\n%s", err, g.sent.Load(), pubOut, s.log)
		case <-deadline:
			t.Fatalf("publish made no progress: %d upload bytes forwarded, %d uploads answered", g.sent.Load(), g.answered.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	t.Logf("killing the server after %d upload bytes forwarded and %d uploads answered", g.sent.Load(), g.answered.Load())
	s.stop(syscall.SIGKILL)
	g.close()
	if err := <-pub; err == nil {
		t.Fatal("publish succeeded although the server was killed")
	}

	s2 := startServer(t, data)
	if list := s2.dvfs("template", "list"); strings.Contains(list, "vm ") {
		t.Fatalf("a version is visible after the killed publish:\n%s", list)
	}
	out := s2.dvfs("template", "publish", "--name", "vm", vm)
	t.Logf("rerun:\n%s", out)
	total := 0
	if m := regexp.MustCompile(`reused:\s+(\d+)`).FindStringSubmatch(out); m != nil {
		total, _ = strconv.Atoi(m[1])
	}
	if total == 0 {
		t.Fatalf("the rerun reused no block: everything was sent again")
	}
	exp := filepath.Join(t.TempDir(), "out")
	s2.dvfs("template", "export", "vm", exp)
	sameTree(t, vm, exp)
}

// uploadGate is a proxy in front of a server that forwards the bodies of
// block uploads up to a limit of bytes, then holds them until closed, and
// counts the uploads the server answered with success. A request it cannot
// pass on (the gate closed, the server gone) has its connection cut, as a
// dying server's would be: no answer, not a proxy's 502.
type uploadGate struct {
	url      string
	limit    int64
	sent     atomic.Int64
	answered atomic.Int32
	held     chan struct{} // closed once the limit is reached
	heldOnce sync.Once
	release  chan struct{} // closed: held bodies fail
	front    *httptest.Server
	stopOnce sync.Once
}

func newUploadGate(t *testing.T, target string, limit int64) *uploadGate {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	g := &uploadGate{limit: limit, held: make(chan struct{}), release: make(chan struct{})}
	rp := newProxy(t, u)
	rp.ModifyResponse = func(r *http.Response) error {
		if r.Request.URL.Path == api.PathUpload && r.StatusCode/100 == 2 {
			g.answered.Add(1)
		}
		return nil
	}
	rp.ErrorHandler = func(http.ResponseWriter, *http.Request, error) { panic(http.ErrAbortHandler) }
	g.front = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == api.PathUpload {
			r.Body = &gatedBody{g: g, rc: r.Body}
		}
		rp.ServeHTTP(w, r)
	}))
	g.url = g.front.URL
	t.Cleanup(g.close)
	return g
}

func (g *uploadGate) holding() bool {
	select {
	case <-g.held:
		return true
	default:
		return false
	}
}

// close fails the held bodies and shuts the proxy and its connections.
func (g *uploadGate) close() {
	g.stopOnce.Do(func() {
		close(g.release)
		g.front.CloseClientConnections()
		g.front.Close()
	})
}

type gatedBody struct {
	g  *uploadGate
	rc io.ReadCloser
}

func (b *gatedBody) Read(p []byte) (int, error) {
	room := b.g.limit - b.g.sent.Load()
	if room <= 0 {
		b.g.heldOnce.Do(func() { close(b.g.held) })
		<-b.g.release
		return 0, errors.New("upload gate closed")
	}
	if int64(len(p)) > room {
		p = p[:room]
	}
	n, err := b.rc.Read(p)
	b.g.sent.Add(int64(n))
	return n, err
}

func (b *gatedBody) Close() error { return b.rc.Close() }

// A block corrupted in the server's store is refused with a clear error,
// never served.
func TestCorruptBlockNotServed(t *testing.T) {
	data := t.TempDir()
	s := startServer(t, data)
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	// One block of random bytes is stored raw, so its bytes can be found
	// in the value log.
	block := make([]byte, 64<<10)
	rngFill(block)
	os.WriteFile(filepath.Join(vm, "disk.vmdk"), block, 0o644)
	s.dvfs("template", "publish", "--name", "vm", vm)
	s.stop(syscall.SIGTERM)

	needle := block[30000:30064]
	found := 0
	filepath.WalkDir(filepath.Join(data, "store"), func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if i := bytes.Index(b, needle); i >= 0 {
			b[i+10] ^= 0xff
			found++
			return os.WriteFile(path, b, 0o644)
		}
		return nil
	})
	if found == 0 {
		t.Fatal("block bytes not found in the store files")
	}

	s2 := startServer(t, data)
	out, err := s2.try("template", "export", "vm", filepath.Join(t.TempDir(), "out"))
	if err == nil {
		t.Fatalf("export of a corrupt block succeeded:\n%s", out)
	}
	if !strings.Contains(out, "corrupt") {
		t.Fatalf("error does not say the block is corrupt:\n%s", out)
	}
	t.Logf("client error: %s", strings.TrimSpace(out))
}

// Removing a version frees the blocks only it used and keeps the rest.
func TestRemoveCollectsGarbage(t *testing.T) {
	s := startServer(t, t.TempDir())
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	disk := filepath.Join(vm, "disk.vmdk")
	writeVMDisk(t, disk, 64<<20, 3)
	s.dvfs("template", "publish", "--name", "vm", vm)
	writeVMDisk(t, disk, 64<<20, 4) // a different disk: few shared blocks
	s.dvfs("template", "publish", "--name", "vm", vm)

	out := s.dvfs("template", "rm", "vm@1")
	m := regexp.MustCompile(`deleted (\d+) blocks, kept (\d+)`).FindStringSubmatch(out)
	if m == nil || m[1] == "0" {
		t.Fatalf("rm freed nothing:\n%s", out)
	}
	list := s.dvfs("template", "list")
	if regexp.MustCompile(`(?m)^vm\s+1\s`).MatchString(list) || !regexp.MustCompile(`(?m)^vm\s+2\s`).MatchString(list) {
		t.Fatalf("want only version 2 listed:\n%s", list)
	}
	exp := filepath.Join(t.TempDir(), "out")
	s.dvfs("template", "export", "vm@2", exp)
	sameTree(t, vm, exp)
	// A version number is never reused.
	s.dvfs("template", "publish", "--name", "vm", vm)
	if !regexp.MustCompile(`(?m)^vm\s+3\s`).MatchString(s.dvfs("template", "list")) {
		t.Fatal("republish did not become version 3")
	}
}

// Requests without a token, with a user token where admin is needed, or
// with bad input get clear 4xx errors.
func TestAuthAndBadRequests(t *testing.T) {
	s := startServer(t, t.TempDir())
	user := strings.TrimSpace(s.dvfs("token", "create", "--role", "user", "alice"))
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	os.WriteFile(filepath.Join(vm, "a.vmx"), []byte("x"), 0o644)

	cases := []struct {
		name  string
		token string
		args  []string
		want  string
	}{
		{"no token", "", []string{"template", "list"}, "401"},
		{"bad token", "dvfs_nope", []string{"template", "list"}, "401"},
		{"user cannot publish", user, []string{"template", "publish", "--name", "x", vm}, "403"},
		{"user can list", user, []string{"template", "list"}, "TEMPLATE"},
		{"bad name", s.token, []string{"template", "show", "../etc"}, "name"},
		{"no such template", s.token, []string{"template", "show", "nope"}, "404"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			cmd := []string{"--server", s.url, "--token", c.token}
			if c.token == "" {
				cmd = []string{"--server", s.url}
			}
			out, _ := (&serverProc{t: t, url: s.url}).try(append(cmd, c.args...)...)
			if !strings.Contains(out, c.want) {
				t.Fatalf("want %q in:\n%s", c.want, out)
			}
		})
	}
}
