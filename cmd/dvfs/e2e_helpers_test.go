//go:build linux

package main

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// dvfsBin is the binary under test, built once by TestMain.
var dvfsBin string

// e2eBuildFlags build dvfsBin as this test binary was built: with the
// cgofuse adapter when it has it (e2e_cgofuse_test.go).
var e2eBuildFlags []string

func TestMain(m *testing.M) {
	if os.Getenv("DVFS_E2E_WRITER") != "" {
		writerMain()
		return
	}
	if os.Getenv("DVFS_E2E_IDLE") != "" {
		idleMain()
		return
	}
	if u := os.Getenv("DVFS_E2E_HTTPGET"); u != "" {
		httpGetMain(u)
		return
	}
	dir, err := os.MkdirTemp("", "dvfs-e2e-bin")
	if err != nil {
		panic(err)
	}
	dvfsBin = filepath.Join(dir, "dvfs")
	out, err := exec.Command("go", append(append([]string{"build"}, e2eBuildFlags...), "-o", dvfsBin, ".")...).CombinedOutput()
	if err != nil {
		os.Stderr.Write(out)
		panic(err)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// serverProc is a running `dvfs serve`.
type serverProc struct {
	t      *testing.T
	prefix []string // runs every command in a network namespace, when set
	data   string
	url    string
	token  string
	cmd    *exec.Cmd
	log    *syncBuffer
	done   chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// waitFor waits up to d for ok to hold of what was written, and reports
// whether it did. A process's log reaches the buffer through a pipe and a
// copying goroutine, a little after the process wrote it.
func (s *syncBuffer) waitFor(d time.Duration, ok func(log string) bool) bool {
	deadline := time.Now().Add(d)
	for !ok(s.String()) {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(50 * time.Millisecond)
	}
	return true
}

// waitCompressed waits until the server has compressed, while idle, every
// block uploaded to it uncompressed (a publish on this machine sends them
// so): its log says so n times.
func (s *serverProc) waitCompressed(n int) {
	s.t.Helper()
	if !s.log.waitFor(2*time.Minute, func(log string) bool { return len(compressedRE.FindAllStringIndex(log, -1)) >= n }) {
		s.t.Fatalf("the server did not finish compressing uploaded blocks in 2 minutes:\n%s", s.log)
	}
}

var compressedRE = regexp.MustCompile(`msg="compressed deferred blocks".* done=true`)

var urlRE = regexp.MustCompile(`msg=serving url=(\S+)`)

// startServer runs `dvfs serve` on data and waits for its readiness line.
func startServer(t *testing.T, data string) *serverProc {
	t.Helper()
	return startServerAt(t, data, "127.0.0.1:0")
}

// startServerAt runs `dvfs serve` on data at addr.
func startServerAt(t *testing.T, data, addr string, extra ...string) *serverProc {
	t.Helper()
	return startServerIn(t, nil, data, addr, extra...)
}

// command makes a dvfs command, run through prefix (e.g. nsenter).
func command(prefix []string, args ...string) *exec.Cmd {
	all := append(append(append([]string{}, prefix...), dvfsBin), args...)
	return exec.Command(all[0], all[1:]...)
}

// startServerIn runs `dvfs serve` through prefix.
func startServerIn(t *testing.T, prefix []string, data, addr string, extra ...string) *serverProc {
	t.Helper()
	return startServerEnv(t, prefix, nil, data, addr, extra...)
}

// startServerEnv runs `dvfs serve` through prefix with env added to its
// environment: a test that sets a variable for its server alone may run
// in parallel with others, as one using t.Setenv may not.
func startServerEnv(t *testing.T, prefix, env []string, data, addr string, extra ...string) *serverProc {
	t.Helper()
	s := &serverProc{t: t, prefix: prefix, data: data, log: &syncBuffer{}, done: make(chan struct{})}
	s.cmd = command(prefix, append([]string{"serve", "--data", data, "--listen", addr}, extra...)...)
	if env != nil {
		s.cmd.Env = append(os.Environ(), env...)
	}
	pr, pw := io.Pipe()
	// The log first: a line the scanner below has seen is then in the
	// log already, whatever the test reads from it once it is ready.
	s.cmd.Stderr = io.MultiWriter(s.log, pw)
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { s.cmd.Wait(); pw.Close(); close(s.done) }()
	ready := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if m := urlRE.FindStringSubmatch(sc.Text()); m != nil {
				ready <- m[1]
			}
		}
		close(ready)
	}()
	select {
	case u, ok := <-ready:
		if !ok {
			t.Fatalf("server exited before serving:\n%s", s.log)
		}
		s.url = u
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		t.Fatalf("server not ready after 30s:\n%s", s.log)
	}
	tok, err := os.ReadFile(filepath.Join(data, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	s.token = strings.TrimSpace(string(tok))
	t.Cleanup(func() { s.stop(syscall.SIGTERM) })
	return s
}

// stop signals the server and waits for it to exit.
func (s *serverProc) stop(sig syscall.Signal) {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(sig)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// dvfs runs a client command against s and returns its stdout; a failure
// fails the test.
func (s *serverProc) dvfs(args ...string) string {
	s.t.Helper()
	out, err := s.try(args...)
	if err != nil {
		s.t.Fatalf("dvfs %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// try runs a client command and returns its combined output and error.
func (s *serverProc) try(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	all := append(append(append([]string{}, s.prefix...), dvfsBin), args...)
	cmd := exec.CommandContext(ctx, all[0], all[1:]...)
	cmd.Env = append(os.Environ(), "DVFS_SERVER="+s.url, "DVFS_TOKEN="+s.token)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// diskUse is the space allocated to the files under dir.
func diskUse(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		var st syscall.Stat_t
		if err := syscall.Lstat(path, &st); err != nil {
			return err
		}
		n += st.Blocks * 512
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// writeVMDisk writes a file of size bytes that looks like a VM disk: runs
// of random data (incompressible), runs of text-like data (compressible),
// and runs never written (holes), in 1 MiB pieces.
func writeVMDisk(t testing.TB, path string, size int64, seed uint64) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	src := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8)})
	r := rand.New(src)
	buf := make([]byte, 1<<20)
	words := []string{"kernel ", "vmware ", "0x7fff ", "ntfs ", "INFO ", "registry ", "\n"}
	for off := int64(0); off < size; off += int64(len(buf)) {
		n := min(int64(len(buf)), size-off)
		switch r.IntN(10) {
		case 0, 1, 2: // hole
			continue
		case 3, 4, 5, 6: // random
			src.Read(buf[:n])
		default: // compressible text
			b := buf[:0]
			for int64(len(b)) < n {
				b = append(b, words[r.IntN(len(words))]...)
			}
		}
		if _, err := f.WriteAt(buf[:n], off); err != nil {
			t.Fatal(err)
		}
	}
}

// sameTree fails unless the regular files under a and b are byte-identical.
func sameTree(t *testing.T, a, b string) {
	t.Helper()
	err := filepath.WalkDir(a, func(path string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(a, path)
		if !sameFile(t, path, filepath.Join(b, rel)) {
			t.Errorf("%s differs", rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func sameFile(t *testing.T, a, b string) bool {
	fa, err := os.Open(a)
	if err != nil {
		t.Fatal(err)
	}
	defer fa.Close()
	fb, err := os.Open(b)
	if err != nil {
		t.Fatal(err)
	}
	defer fb.Close()
	ba, bb := make([]byte, 1<<20), make([]byte, 1<<20)
	for {
		na, ea := io.ReadFull(fa, ba)
		nb, eb := io.ReadFull(fb, bb)
		if na != nb || !bytes.Equal(ba[:na], bb[:nb]) {
			return false
		}
		if ea != nil || eb != nil {
			return (ea == nil) == (eb == nil)
		}
	}
}

// rngFill fills b with pseudo-random bytes.
func rngFill(b []byte) {
	rand.NewChaCha8([32]byte{9}).Read(b)
}

// publishRandom publishes template name: one disk.vmdk of size random
// bytes from seed. It returns the bytes and the template's source
// directory (publish it again after a change).
func publishRandom(t *testing.T, s *serverProc, name string, size int, seed byte) ([]byte, string) {
	t.Helper()
	vm := filepath.Join(t.TempDir(), "tpl")
	os.Mkdir(vm, 0o755)
	data := make([]byte, size)
	rand.NewChaCha8([32]byte{seed}).Read(data)
	if err := os.WriteFile(filepath.Join(vm, "disk.vmdk"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	s.dvfs("template", "publish", "--name", name, vm)
	return data, vm
}

// newProxy is a reverse proxy to target with connections of its own, not
// http.DefaultTransport's, which the whole test process shares (and
// httptest.Server.Close closes the idle connections of). Through the shared
// one, a publish via a proxy failed with "unexpected EOF" and no error at
// the proxy in 3 of 23 runs; through its own, in none of 75.
func newProxy(t *testing.T, target *url.URL) *httputil.ReverseProxy {
	rp := httputil.NewSingleHostReverseProxy(target)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	rp.Transport = tr
	t.Cleanup(tr.CloseIdleConnections)
	return rp
}
