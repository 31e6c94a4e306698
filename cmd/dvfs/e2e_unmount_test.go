//go:build linux

package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Another local user may read a mount's status but not unmount it
// through its status socket: the request is refused with a clear message,
// the mount logs who asked, and goes on serving.
func TestUnmountRequestFromAnotherUserRefused(t *testing.T) {
	requireRoot(t, "to ask as another user")
	s := startServer(t, t.TempDir())
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"))
	mp, err := mountpointPath(m.dir)
	if err != nil {
		t.Fatal(err)
	}
	// A small client, built here, asks as nobody (from the directory the
	// dvfs binary was built in, which nobody may enter).
	asker := filepath.Join(filepath.Dir(dvfsBin), "asker")
	src := t.TempDir()
	os.WriteFile(filepath.Join(src, "go.mod"), []byte("module asker\n"), 0o644)
	os.WriteFile(filepath.Join(src, "main.go"), []byte(askerSource), 0o644)
	build := exec.Command("go", "build", "-o", asker, ".")
	build.Dir = src
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building the asker: %v\n%s", err, out)
	}
	if err := os.Chmod(filepath.Dir(dvfsBin), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(asker, statusSocket(mp))
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "403 only the user who mounted it, or root, may unmount it") {
		t.Fatalf("nobody's request: %v: %s", err, out)
	}
	if !m.log.waitFor(10*time.Second, func(log string) bool {
		return strings.Contains(log, "refused an unmount request from another user") && strings.Contains(log, "uid=65534")
	}) {
		t.Errorf("no log line naming who was refused:\n%s", m.log)
	}
	select {
	case <-m.done:
		t.Fatalf("the mount exited:\n%s", m.log)
	case <-time.After(time.Second):
	}
	if _, err := os.ReadDir(filepath.Join(m.dir, "templates")); err != nil {
		t.Errorf("the mount stopped serving: %v", err)
	}
}

// askerSource posts dvfs umount's request to the socket it is given and
// prints the answer.
const askerSource = `package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
)

func main() {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, "unix", os.Args[1])
	}}}
	resp, err := hc.Post("http://mount/unmount", "", nil)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	b, _ := io.ReadAll(resp.Body)
	fmt.Println(resp.StatusCode, string(b))
}
`

// requireRoot skips a test that needs root for why, except in CI, which
// runs as root: there it fails.
func requireRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root, and this test needs root %s", why)
		}
		t.Skipf("needs root %s (this never skips in CI)", why)
	}
}
