// Package s3test runs a real S3 server for tests: versitygw (a Go S3
// gateway, Apache-2.0) over a temporary directory, on loopback, with its
// own credentials. CI installs it (.ci/test); without it a test skips,
// except under CI, where it fails.
package s3test

import (
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// Credentials of the server's root user.
const (
	AccessKey = "dvfs-test-access"
	SecretKey = "dvfs-test-secret-key"
	Region    = "us-east-1"
)

// Server is a running versitygw.
type Server struct {
	// Endpoint is host:port of the S3 API, plain HTTP.
	Endpoint string
	// Dir is the directory that holds the buckets, one folder each.
	Dir string
}

// Binary finds versitygw on PATH or in Go's install directory; "" when
// it is not installed.
func Binary() string {
	if p, err := exec.LookPath("versitygw"); err == nil {
		return p
	}
	for _, dir := range []string{os.Getenv("GOBIN"), filepath.Join(os.Getenv("HOME"), "go", "bin")} {
		if dir == "" {
			continue
		}
		if p := filepath.Join(dir, "versitygw"); fileExists(p) {
			return p
		}
	}
	return ""
}

func fileExists(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir()
}

// Args are versitygw's arguments to serve the buckets in dir on addr
// (host:port) with this package's credentials. --nometa: objects carry no
// user metadata here, and the gateway then needs no extended attributes
// on dir.
func Args(addr, dir string) []string {
	return []string{"--access", AccessKey, "--secret", SecretKey, "--region", Region,
		"--port", addr, "--quiet", "--keep-alive", "posix", "--nometa", dir}
}

// Start runs versitygw's posix backend over a new temporary directory
// and stops it (by its PID) when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	if runtime.GOOS != "linux" {
		// Under Wine (.ci/wine) the Linux run covers these tests.
		disktest.SkipOffLinux(t, "versitygw is started as a Linux program")
	}
	bin := Binary()
	if bin == "" {
		const want = "versitygw is missing (go install github.com/versity/versitygw/cmd/versitygw@v1.8.0)"
		if os.Getenv("CI") != "" {
			t.Fatal(want + ": CI installs it (.ci/test)")
		}
		t.Skip(want)
	}
	dir := disktest.TempDir(t)
	addr := disktest.FreeAddr(t)
	logPath := filepath.Join(disktest.TempDir(t), "versitygw.log")
	log, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	output := func() string { b, _ := os.ReadFile(logPath); return string(b) }
	cmd := exec.Command(bin, Args(addr, dir)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		// Any HTTP answer (an anonymous request is refused) says the
		// gateway serves.
		resp, err := http.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			break
		}
		select {
		case <-done:
			t.Fatalf("versitygw exited: %s", output())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("versitygw does not answer on %s after 30s: %v\n%s", addr, err, output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &Server{Endpoint: addr, Dir: dir}
}
