//go:build linux

package main

import (
	"bufio"
	"io"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"
)

// mountProc is a running `dvfs mount`.
type mountProc struct {
	t     *testing.T
	dir   string // mountpoint
	cache string
	cmd   *exec.Cmd
	log   *syncBuffer
	done  chan struct{}
}

// requireFUSE skips without /dev/fuse, except in CI, where a missing
// /dev/fuse is a failure.
func requireFUSE(t *testing.T) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs /dev/fuse: %v", err)
		}
		t.Skipf("no /dev/fuse: %v (this never skips in CI)", err)
	}
}

// startMount runs `dvfs mount` against s and waits until it is mounted.
func (s *serverProc) startMount(t *testing.T, cache, mountpoint string, extra ...string) *mountProc {
	t.Helper()
	requireFUSE(t)
	os.MkdirAll(mountpoint, 0o755)
	m := &mountProc{t: t, dir: mountpoint, cache: cache, log: &syncBuffer{}, done: make(chan struct{})}
	m.cmd = command(s.prefix, append(append([]string{"mount", "--cache", cache}, extra...), mountpoint)...)
	m.cmd.Env = append(os.Environ(), "DVFS_SERVER="+s.url, "DVFS_TOKEN="+s.token)
	pr, pw := io.Pipe()
	// The log first: a line the scanner below has seen is then in the
	// log already, whatever the test reads from it once it is ready.
	m.cmd.Stderr = io.MultiWriter(m.log, pw)
	if err := m.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { m.cmd.Wait(); pw.Close(); close(m.done) }()
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(pr)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "msg=mounted") {
				close(ready)
				signalled = true
			}
		}
		if !signalled {
			close(ready)
		}
	}()
	select {
	case <-ready:
	case <-time.After(30 * time.Second):
		t.Fatalf("mount not ready after 30s:\n%s", m.log)
	}
	select {
	case <-m.done:
		t.Fatalf("mount exited:\n%s", m.log)
	default:
	}
	t.Cleanup(m.unmount)
	return m
}

// unmount unmounts cleanly with dvfs umount and waits for the process.
func (m *mountProc) unmount() {
	select {
	case <-m.done:
		forceUnmount(m.dir)
		return
	default:
	}
	out, err := exec.Command(dvfsBin, "umount", m.dir).CombinedOutput()
	if err != nil {
		m.t.Errorf("dvfs umount: %v\n%s", err, out)
		m.cmd.Process.Kill()
		forceUnmount(m.dir)
	}
	select {
	case <-m.done:
	case <-time.After(60 * time.Second):
		m.t.Errorf("mount did not exit after umount:\n%s", m.log)
		m.cmd.Process.Kill()
	}
}

// kill SIGKILLs the mount process and detaches the dead mount.
func (m *mountProc) kill() {
	m.cmd.Process.Signal(syscall.SIGKILL)
	<-m.done
	forceUnmount(m.dir)
}

// forceUnmount detaches a mount whose server is gone.
func forceUnmount(dir string) {
	for range 50 {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			return // not mounted (any more)
		}
	}
}
