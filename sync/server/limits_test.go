package server_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/publish"
	"github.com/dvfs-project/dvfs/sync/repo"
	"github.com/dvfs-project/dvfs/sync/server"
)

// logBuffer collects a server's log lines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// lines returns the log lines that contain every one of parts.
func (l *logBuffer) lines(parts ...string) []string {
	var out []string
	for _, line := range strings.Split(l.String(), "\n") {
		all := line != ""
		for _, p := range parts {
			all = all && strings.Contains(line, p)
		}
		if all {
			out = append(out, line)
		}
	}
	return out
}

// waitLines waits (at most a minute: the outcome is asserted, not the
// time) for a log line that contains every one of parts.
func (l *logBuffer) waitLines(parts ...string) []string {
	for range 600 {
		if got := l.lines(parts...); len(got) > 0 {
			return got
		}
		time.Sleep(100 * time.Millisecond)
	}
	return nil
}

// limitedEnv is a server behind its own listener and http.Server
// (server.Listen), as dvfs serve runs it.
type limitedEnv struct {
	addr    string
	token   string // alice's, a user's
	mallory string // another user's
	log     *logBuffer
}

func newLimitedEnv(t *testing.T, lim server.Limits) *limitedEnv {
	t.Helper()
	_, key, _ := ed25519.GenerateKey(nil)
	r, err := repo.New(repo.Config{Store: memstore.New(), Key: key})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := r.CreateToken(context.Background(), "alice", api.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	mallory, err := r.CreateToken(context.Background(), "mallory", api.RoleUser)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	tcp, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln, hs := server.New(server.Config{Repo: r, Logger: log, Limits: lim}).Listen(tcp)
	go hs.Serve(ln)
	t.Cleanup(func() { hs.Close() })
	return &limitedEnv{addr: tcp.Addr().String(), token: tok, mallory: mallory, log: logs}
}

// open sends the headers of a POST to path with a body of length bytes
// (none of it yet) and returns the connection.
func (e *limitedEnv) open(t *testing.T, path string, length int64) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: dvfs\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", path, e.token, length)
	return c
}

// do sends a request as alice and returns the response, its body read
// and closed.
func (e *limitedEnv) do(t *testing.T, method, path string, body []byte) *http.Response {
	t.Helper()
	req, _ := http.NewRequest(method, "http://"+e.addr+path, bytes.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+e.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

// dial connects to the server from the loopback address ip.
func (e *limitedEnv) dial(t *testing.T, ip net.IP) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}}
	c, err := d.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// status reads the response on c; 0 if the server closed c without one.
// It gives up after a minute: a server that neither answers nor closes
// fails the test.
func status(t *testing.T, c net.Conn) int {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(time.Minute))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("no answer and the connection still open: %v", err)
		}
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// A body that trickles in is cut off once it falls below MinRate after
// Grace: 408, logged as a warning naming the client.
func TestSlowBodyCutOff(t *testing.T) {
	e := newLimitedEnv(t, server.Limits{Grace: 500 * time.Millisecond, MinRate: 64 << 10})
	c := e.open(t, api.PathUpload, 1<<20)
	stop := make(chan struct{})
	defer close(stop)
	go func() { // one byte every 100 ms, until the server lets go
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
			if _, err := c.Write([]byte{0}); err != nil {
				return
			}
		}
	}()
	if got := status(t, c); got != http.StatusRequestTimeout && got != 0 {
		t.Fatalf("slow body: status %d, want 408", got)
	}
	if lines := e.log.waitLines("level=WARN", "status=408", "client="+c.LocalAddr().String()); lines == nil {
		t.Fatalf("no warning with status 408 and the client's address; log:\n%s", e.log)
	}
}

// A client that sends part of an upload and hangs up gets a 4xx-class
// warning with its address in the log, not a 500 and an ERROR line.
func TestAbortedUploadIsClientFault(t *testing.T) {
	e := newLimitedEnv(t, server.Limits{})
	c := e.open(t, api.PathUpload, 4<<20)
	c.Write(make([]byte, 100<<10))
	client := c.LocalAddr().String()
	c.Close()
	if lines := e.log.waitLines("request failed", "client="+client); lines == nil {
		t.Fatalf("no log line with the client's address; log:\n%s", e.log)
	}
	if got := e.log.lines("request failed", "level=WARN", "status=400", "client="+client); len(got) != 1 {
		t.Fatalf("want one warning with status 400; log:\n%s", e.log)
	}
	if got := e.log.lines("level=ERROR"); len(got) > 0 {
		t.Fatalf("an aborted upload logged an error: %s", got)
	}
}

// A body whose Content-Length is over its route's bound, or over the
// memory for all bodies, is refused with 413 before any of it is sent.
func TestOversizedBody(t *testing.T) {
	e := newLimitedEnv(t, server.Limits{BodyMemory: 8 << 20})
	cases := []struct {
		name   string
		path   string
		length int64
	}{
		{"upload over its bound", api.PathUpload, api.MaxUploadBytes + 1},
		{"manifest over the body memory", "/v1/clones/lab/generations?parent=1&epoch=1", 9 << 20},
		{"json over its bound", "/v1/clones/lab/lease", api.MaxJSONBytes + 1},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			conn := e.open(t, c.path, c.length)
			if got := status(t, conn); got != http.StatusRequestEntityTooLarge {
				t.Fatalf("status %d, want 413", got)
			}
		})
	}
}

// Bodies in flight never hold more than BodyMemory: while one upload holds
// most of it, another waits and gets 503 after BodyWait; once the first
// is gone, the second is taken.
func TestBodyMemoryBound(t *testing.T) {
	e := newLimitedEnv(t, server.Limits{BodyMemory: 4 << 20, BodyWait: time.Second, Grace: time.Hour})
	// The hog is another user: one user alone may hold only a quarter
	// of the memory (429 beyond it).
	hog := e.dial(t, net.IPv4(127, 0, 0, 2))
	fmt.Fprintf(hog, "POST %s HTTP/1.1\r\nHost: dvfs\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", api.PathUpload, e.mallory, 3<<20)
	hog.Write(make([]byte, 1024))
	time.Sleep(100 * time.Millisecond) // not needed for the outcome: the hog's headers go first either way
	var batch []byte                   // 1.25 MiB: more than the hog leaves
	for i := range 20 {
		plain := bytes.Repeat([]byte(fmt.Sprintf("block %d ", i)), 9000)[:64<<10]
		batch = api.AppendDeferredBlock(batch, blockstore.Sum(plain), plain)
	}
	upload := func() (int, string) {
		resp := e.do(t, http.MethodPost, api.PathUpload, batch)
		return resp.StatusCode, resp.Header.Get("Retry-After")
	}
	if got, retry := upload(); got != http.StatusServiceUnavailable || retry == "" {
		t.Fatalf("upload while the memory is taken: status %d (Retry-After %q), want 503 with Retry-After", got, retry)
	}
	hog.Close()
	var got int
	for range 50 { // the server notices the hog's close when it next reads
		if got, _ = upload(); got != http.StatusServiceUnavailable {
			break
		}
	}
	if got != http.StatusNoContent {
		t.Fatalf("upload once the memory is free: status %d, want 204", got)
	}
}

// One user's bodies count against one share of the body memory from
// whatever addresses they come: mallory sends four 2 MiB bodies from four
// addresses into a 4 MiB budget; one is taken, the other three wait for
// mallory's share and get 429, and alice's upload is taken at once.
// Before, the share was per address: two of mallory's bodies took the
// whole budget and alice got 503.
func TestBodyShareByUser(t *testing.T) {
	e := newLimitedEnv(t, server.Limits{BodyMemory: 4 << 20, BodyWait: 2 * time.Second, Grace: time.Hour})
	var conns []net.Conn
	for i := range 4 {
		c := e.dial(t, net.IPv4(127, 0, 0, byte(2+i)))
		fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: dvfs\r\nAuthorization: Bearer %s\r\nContent-Length: %d\r\n\r\n", api.PathUpload, e.mallory, 2<<20)
		c.Write(make([]byte, 1024))
		conns = append(conns, c)
	}
	// Answers; the body taken waits for the rest of itself for the hour
	// of Grace, until the test closes it (0).
	answers := make(chan int, len(conns))
	for _, c := range conns {
		go func() {
			c.SetReadDeadline(time.Now().Add(time.Minute))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				answers <- 0
				return
			}
			resp.Body.Close()
			answers <- resp.StatusCode
		}()
	}
	time.Sleep(200 * time.Millisecond) // not needed for the outcome: mallory's bodies are all in line by now or will be
	var batch []byte                   // 512 KiB
	for i := range 8 {
		plain := bytes.Repeat([]byte(fmt.Sprintf("alice %d ", i)), 9000)[:64<<10]
		batch = api.AppendDeferredBlock(batch, blockstore.Sum(plain), plain)
	}
	if resp := e.do(t, http.MethodPost, api.PathUpload, batch); resp.StatusCode != http.StatusNoContent {
		t.Errorf("alice's upload while mallory sends from four addresses: status %d, want 204", resp.StatusCode)
	}
	got := map[int]int{}
	for range len(conns) - 1 {
		got[<-answers]++
	}
	for _, c := range conns {
		c.Close()
	}
	got[<-answers]++
	if got[http.StatusTooManyRequests] != 3 || got[0] != 1 {
		t.Errorf("mallory's four bodies: %v (status: count; 0 is no answer), want three 429 and one taken", got)
	}
}

// At MaxConns, a new connection closes one that has sent nothing, and its
// request is answered.
func TestConnLimitClosesIdle(t *testing.T) {
	const max = 8
	e := newLimitedEnv(t, server.Limits{MaxConns: max})
	var idle []net.Conn
	for range 3 * max {
		c, err := net.Dial("tcp", e.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		idle = append(idle, c)
	}
	if resp := e.do(t, http.MethodGet, api.PathWhoAmI, nil); resp.StatusCode != http.StatusOK {
		t.Fatalf("whoami at the connection limit: status %d", resp.StatusCode)
	}
	closed := 0
	for _, c := range idle {
		c.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); err == io.EOF {
			closed++
		}
	}
	// Every connection beyond the bound made room by closing an idle one.
	if closed < 2*max {
		t.Fatalf("%d of %d idle connections closed, want at least %d", closed, len(idle), 2*max)
	}
	if e.log.waitLines("level=WARN", "connection limit reached") == nil {
		t.Fatalf("no warning about the connection limit; log:\n%s", e.log)
	}
}

// holdingFrames is a memstore whose frame reads, once armed, hold the
// second read of a request until that request's context ends: a fetch
// that is mid-stream when its client goes away.
type holdingFrames struct {
	*memstore.Store
	armed   atomic.Bool
	reads   atomic.Int32
	holding chan struct{}
}

func (h *holdingFrames) GetFrame(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if h.armed.Load() && h.reads.Add(1) == 2 {
		close(h.holding)
		select {
		case <-ctx.Done():
		case <-time.After(time.Minute):
		}
	}
	return h.Store.GetFrame(ctx, id, dst)
}

// A client that goes away in the middle of a fetch's stream is the
// client's doing: a warning naming it, no error (before, the store's
// "context canceled" for the next block was logged as an ERROR of an
// unreadable block).
func TestFetchAbortedIsClientFault(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(nil)
	st := &holdingFrames{Store: memstore.New(), holding: make(chan struct{})}
	r, err := repo.New(repo.Config{Store: st, Key: key})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	tok, err := r.CreateToken(ctx, "admin", api.RoleAdmin)
	if err != nil {
		t.Fatal(err)
	}
	logs := &logBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	srv := httptest.NewServer(server.New(server.Config{Repo: r, Logger: log}))
	t.Cleanup(srv.Close)
	c, err := client.New(client.Config{Server: srv.URL, Token: tok, ServerKey: key.Public().(ed25519.PublicKey)})
	if err != nil {
		t.Fatal(err)
	}
	dir := disktest.TempDir(t)
	data := make([]byte, 8<<16)
	for i := range data {
		data[i] = byte(i * 7 / 65536)
	}
	if err := os.WriteFile(filepath.Join(dir, "disk.img"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := publish.Publish(ctx, publish.Config{Server: c, Name: "tpl", Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := r.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	m, _, err := c.Manifest(ctx, "tpl", 0)
	if err != nil {
		t.Fatal(err)
	}
	ids := m.Files[0].Blocks
	if len(ids) < 2 {
		t.Fatalf("%d blocks, want several", len(ids))
	}

	st.armed.Store(true)
	fctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- c.Fetch(fctx, ids, func(blockstore.ID, []byte) error { return nil }) }()
	select {
	case <-st.holding:
	case <-time.After(time.Minute):
		t.Fatal("the fetch never reached its second block")
	}
	cancel()
	if err := <-done; err == nil {
		t.Fatal("a canceled fetch succeeded")
	}
	if got := logs.waitLines("fetch: client went away", "level=WARN", "client=127.0.0.1:"); got == nil {
		t.Fatalf("no warning naming the client; log:\n%s", logs)
	}
	if got := logs.lines("level=ERROR"); len(got) > 0 {
		t.Fatalf("a client leaving mid-fetch logged an error: %s", got)
	}
}
