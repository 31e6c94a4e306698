//go:build linux

package main

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// doctor runs dvfs doctor --json through prefix against s (whatever its
// state) with args, and returns its findings by check (each check's
// findings in order) and whether it exited 0.
func doctor(t *testing.T, s *serverProc, prefix []string, args ...string) (map[string][]finding, bool) {
	t.Helper()
	all := append(append(append([]string{}, prefix...), dvfsBin, "doctor", "--json"), args...)
	cmd := exec.Command(all[0], all[1:]...)
	cmd.Env = append(os.Environ(), "DVFS_SERVER="+s.url, "DVFS_TOKEN="+s.token)
	out, err := cmd.Output()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("dvfs doctor: %v", err)
	}
	var fs []finding
	if err := json.Unmarshal(out, &fs); err != nil {
		t.Fatalf("dvfs doctor --json: %v\n%s", err, out)
	}
	byCheck := map[string][]finding{}
	for _, f := range fs {
		byCheck[f.Check] = append(byCheck[f.Check], f)
	}
	return byCheck, err == nil
}

// wantVerdict fails unless check's first finding has verdict, and its
// detail (and fix, for a problem) say what they must.
func wantVerdict(t *testing.T, fs map[string][]finding, check, verdict string, says ...string) {
	t.Helper()
	if len(fs[check]) == 0 {
		t.Errorf("no finding for %s: %+v", check, fs)
		return
	}
	f := fs[check][0]
	t.Logf("%-4s %-9s %s / %s", f.Verdict, check, f.Detail, f.Fix)
	if f.Verdict != verdict {
		t.Errorf("%s: %s (%s), want %s", check, f.Verdict, f.Detail, verdict)
	}
	if (verdict == verdictFail || verdict == verdictWarn) && f.Fix == "" {
		t.Errorf("%s: %s without what to do: %s", check, verdict, f.Detail)
	}
	for _, w := range says {
		if !strings.Contains(f.Detail+" "+f.Fix, w) {
			t.Errorf("%s: %q does not say %q", check, f.Detail+" / "+f.Fix, w)
		}
	}
}

// dvfs doctor on a healthy workstation finds nothing wrong; then each
// problem it checks for is made real in turn (a clone held elsewhere, a
// disk below the cache's reserve, no FUSE device, the server rebuilt
// with another key, the server gone), and each is a finding saying what
// to do.
func TestDoctor(t *testing.T) {
	requireTool(t, "unshare")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root: this test mounts tmpfs and uses mount namespaces")
		}
		t.Skip("needs root (this never skips in CI)")
	}
	addr := disktest.FreeAddr(t)
	s := startServerAt(t, t.TempDir(), addr)
	publishRandom(t, s, "lab", 1<<20, 'd')
	s.dvfs("clone", "create", "--template", "lab", "c1")
	work := t.TempDir()
	cacheA := filepath.Join(work, "cacheA")
	a := s.startMount(t, cacheA, filepath.Join(work, "mntA"))
	if err := writeSync(filepath.Join(a.dir, "clones", "c1", "f"), []byte("from A")); err != nil {
		t.Fatal(err)
	}

	fs, ok := doctor(t, s, nil, "--cache", cacheA, a.dir)
	if !ok {
		t.Errorf("doctor failed on a healthy workstation: %+v", fs)
	}
	wantVerdict(t, fs, "fuse", verdictOK)
	wantVerdict(t, fs, "cache", verdictOK)
	wantVerdict(t, fs, "server", verdictOK, "admin")
	wantVerdict(t, fs, "key", verdictOK, "running mount")
	wantVerdict(t, fs, "clock", verdictOK)
	wantVerdict(t, fs, "multicast", verdictSkip)
	wantVerdict(t, fs, "leases", verdictOK, "c1", "held by this workstation")

	// A second workstation opens c1, which A holds: read-only there.
	b := s.startMount(t, filepath.Join(work, "cacheB"), filepath.Join(work, "mntB"))
	if err := os.WriteFile(filepath.Join(b.dir, "clones", "c1", "g"), []byte("from B"), 0o644); err == nil {
		t.Fatal("B wrote a clone A holds")
	}
	fs, _ = doctor(t, s, nil, "--cache", filepath.Join(work, "cacheB"), b.dir)
	wantVerdict(t, fs, "leases", verdictWarn, "leased to", "dvfs clone takeover")
	b.unmount()

	// The cache's disk below the reserve, then below twice the reserve.
	small := filepath.Join(work, "small")
	os.Mkdir(small, 0o755)
	run(t, "mount", "-t", "tmpfs", "-o", "size=16m", "tmpfs", small)
	t.Cleanup(func() { exec.Command("umount", small).Run() })
	fs, ok = doctor(t, s, nil, "--cache", filepath.Join(small, "cache"))
	if ok {
		t.Error("doctor passed a cache disk below the reserve")
	}
	wantVerdict(t, fs, "cache", verdictFail, "below the reserve", "ENOSPC")
	fs, _ = doctor(t, s, nil, "--cache", filepath.Join(small, "cache"), "--min-free", "10MiB")
	wantVerdict(t, fs, "cache", verdictWarn, "twice the reserve")

	// No FUSE device: an empty /dev in a mount namespace of its own.
	fs, ok = doctor(t, s, []string{"unshare", "-m", "--propagation", "private", "sh", "-c", `mount -t tmpfs tmpfs /dev && exec "$0" "$@"`}, "--cache", cacheA)
	if ok {
		t.Error("doctor passed without /dev/fuse")
	}
	wantVerdict(t, fs, "fuse", verdictFail, "/dev/fuse", "modprobe fuse")

	// The server rebuilt with a new key at the same address, while the
	// workstation was off: the key A pinned differs.
	a.unmount()
	fs, _ = doctor(t, s, nil, "--cache", cacheA)
	wantVerdict(t, fs, "key", verdictOK, "the key pinned here")
	s.stop(syscall.SIGTERM)
	fs, ok = doctor(t, s, nil, "--cache", cacheA)
	if ok {
		t.Error("doctor passed with the server down")
	}
	wantVerdict(t, fs, "server", verdictFail, "connection refused", "that the server runs")
	wantVerdict(t, fs, "key", verdictSkip)
	s2 := startServerAt(t, t.TempDir(), addr)
	fs, ok = doctor(t, s2, nil, "--cache", cacheA)
	if ok {
		t.Error("doctor passed a server with another key")
	}
	wantVerdict(t, fs, "key", verdictFail, "pinned", "move the cache aside")
}

// Multicast reception: in a network namespace with a multicast route the
// doctor hears a session's announcements; in one without, it cannot join
// the group and says what to do.
func TestDoctorMulticast(t *testing.T) {
	prefix := netns(t)
	s := startServerIn(t, prefix, t.TempDir(), "127.0.0.1:0",
		"--multicast-group", "239.255.42.42:7421", "--multicast-iface", "lo")
	publishRandom(t, s, "lab", 1<<20, 'm') // a session, nobody joins
	// Listen while the next session announces itself (its join window
	// lasts seconds; nobody joins).
	type result struct {
		fs map[string][]finding
	}
	done := make(chan result, 1)
	go func() {
		fs, _ := doctor(t, s, prefix, "--cache", t.TempDir(), "--multicast-iface", "lo", "--probe", "20s")
		done <- result{fs}
	}()
	time.Sleep(2 * time.Second)
	s.dvfs("template", "push", "lab")
	r := <-done
	wantVerdict(t, r.fs, "multicast", verdictOK, "239.255.42.42:7421", "packets")

	// No route for multicast: the group cannot be joined.
	del := append(append([]string{}, prefix...), "ip", "route", "del", "224.0.0.0/4", "dev", "lo")
	out, err := exec.Command(del[0], del[1:]...).CombinedOutput()
	if err != nil {
		t.Fatalf("ip route del: %v\n%s", err, out)
	}
	fs, ok := doctor(t, s, prefix, "--cache", t.TempDir(), "--probe", "1s")
	if ok {
		t.Error("doctor passed without a multicast route")
	}
	wantVerdict(t, fs, "multicast", verdictFail, "cannot join", "224.0.0.0/4")
}

// The clock check's verdicts: within a few seconds is fine, then a
// warning, then a failure, each saying what to do. (The test machine's
// clock is not set wrong for this: it is the evaluation of a measured
// skew, the measuring runs in TestDoctor.)
func TestDoctorClockVerdicts(t *testing.T) {
	for _, tc := range []struct {
		skew    time.Duration
		verdict string
		says    string
	}{
		{0, verdictOK, "within a second"},
		{3 * time.Second, verdictOK, "3s ahead of"},
		{-10 * time.Second, verdictWarn, "10s behind"},
		{2 * time.Minute, verdictFail, "2m0s ahead of"},
	} {
		fs := map[string][]finding{"clock": {clockFinding(tc.skew, nil)}}
		wantVerdict(t, fs, "clock", tc.verdict, tc.says)
	}
}
