//go:build linux

package main

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"
)

// netns makes a network namespace with a multicast-capable loopback and
// returns the prefix that runs a command in it (only its network: the
// FUSE mount stays visible to the test).
func netns(t *testing.T) []string {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root: network namespaces are needed")
		}
		t.Skip("network namespaces need root (this never skips in CI)")
	}
	requireTool(t, "ip")
	requireTool(t, "nsenter")
	name := fmt.Sprintf("dvfs-e2e-%d", rand.Uint32())
	for _, args := range [][]string{
		{"netns", "add", name},
		{"-n", name, "link", "set", "lo", "up"},
		{"-n", name, "link", "set", "lo", "multicast", "on"},
		{"-n", name, "route", "add", "224.0.0.0/4", "dev", "lo"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			exec.Command("ip", "netns", "del", name).Run()
			t.Fatalf("ip %v: %v\n%s", args, err, out)
		}
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", name).Run() })
	return []string{"nsenter", "--net=/run/netns/" + name}
}

var sessionRE = regexp.MustCompile(`multicast session \d+: (\S+) done, (\d+) of (\d+) blocks stored`)

// waitSession waits until the mount reports session ref done and returns
// how many blocks it stored.
func waitSession(t *testing.T, s *serverProc, m *mountProc, ref string) int {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for time.Now().Before(deadline) {
		for _, g := range sessionRE.FindAllStringSubmatch(s.statusOf(t, m), -1) {
			if g[1] == ref {
				n, _ := strconv.Atoi(g[2])
				return n
			}
		}
		time.Sleep(300 * time.Millisecond)
	}
	t.Fatalf("session for %s never finished:\n%s\nmount log:\n%s\nserver log:\n%s", ref, s.statusOf(t, m), m.log, s.log)
	return 0
}

// Publishing sends the new version by multicast to a workstation that is
// mounted: its cache fills without a single unicast fetch, byte-exact;
// an update sends only the changed blocks. The server expects one
// workstation (--multicast-receivers 1): sessions start once it joined.
func TestMulticastFillsCache(t *testing.T) {
	prefix := netns(t)
	s := startServerIn(t, prefix, t.TempDir(), "127.0.0.1:0",
		"--multicast-group", "239.255.42.42:7421", "--multicast-iface", "lo", "--multicast-rate", "800mbit",
		"--multicast-receivers", "1")
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"), "--multicast-iface", "lo")
	vm := filepath.Join(work, "tpl")
	os.Mkdir(vm, 0o755)
	disk := filepath.Join(vm, "disk.vmdk")
	data := make([]byte, 64<<20)
	rand.NewChaCha8([32]byte{'m'}).Read(data)
	os.WriteFile(disk, data, 0o644)
	s.dvfs("template", "publish", "--name", "lab", vm) // a session starts on publish
	t.Logf("published")
	if got := waitSession(t, s, m, "lab@1"); got != 1024 {
		t.Fatalf("the first session stored %d blocks, want all 1024", got)
	}
	st := s.statusOf(t, m)
	if !regexp.MustCompile(`0 misses, 0 fetched`).MatchString(st) {
		t.Fatalf("blocks were fetched by unicast:\n%s", st)
	}
	run(t, "cmp", filepath.Join(m.dir, "templates", "lab", "disk.vmdk"), disk)

	// Change 5% of the blocks; the next session sends only those.
	changed := 0
	for b := 0; b < 1024; b += 20 {
		rand.NewChaCha8([32]byte{'u', byte(b), byte(b >> 8)}).Read(data[b<<16 : b<<16+4096])
		changed++
	}
	os.WriteFile(disk, data, 0o644)
	s.dvfs("template", "publish", "--name", "lab", vm)
	if got := waitSession(t, s, m, "lab@2"); got != changed {
		t.Fatalf("the update session stored %d blocks, want the %d changed ones", got, changed)
	}
	t.Logf("update session done")
	// templates/lab@2 appears, and templates/lab follows, within the
	// catalog's TTL.
	for _, dir := range []string{"lab@2", "lab"} {
		deadline := time.Now().Add(20 * time.Second)
		for exec.Command("cmp", "-s", filepath.Join(m.dir, "templates", dir, "disk.vmdk"), disk).Run() != nil {
			if time.Now().After(deadline) {
				t.Fatalf("templates/%s is not version 2", dir)
			}
			time.Sleep(500 * time.Millisecond)
		}
	}
	t.Logf("verified through the mount")
	t.Logf("status:\n%s", s.statusOf(t, m))
}

// A workstation that was off during a template's multicast session (it
// ended with no receivers) fills its cache with that version in the
// background, by unicast at --fill-rate, instead of staying empty until
// the next push; its status says so, and the blocks read back exact.
func TestMissedSessionFilledByUnicast(t *testing.T) {
	prefix := netns(t)
	s := startServerIn(t, prefix, t.TempDir(), "127.0.0.1:0",
		"--multicast-group", "239.255.42.43:7421", "--multicast-iface", "lo", "--multicast-rate", "800mbit")
	work := t.TempDir()
	_, vm := publishRandom(t, s, "lab", 16<<20, 'f') // its session goes to nobody
	disk := filepath.Join(vm, "disk.vmdk")
	if !s.log.waitFor(time.Minute, regexp.MustCompile(`multicast session done.*template=lab`).MatchString) {
		t.Fatalf("the session never ended:\n%s", s.log)
	}

	// 16 MiB at 4 MiB/s, a burst of one second's worth: at least 3 s
	// (a lower bound holds however loaded the machine is).
	start := time.Now()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"), "--multicast-iface", "lo", "--fill-rate", "4MiB")
	filled := regexp.MustCompile(`multicast session \d+: lab@1 done \(filled by unicast\), 256 of 256 blocks stored`)
	deadline := time.Now().Add(2 * time.Minute)
	for !filled.MatchString(s.statusOf(t, m)) {
		if time.Now().After(deadline) {
			t.Fatalf("the missed version was not filled:\n%s\nmount log:\n%s", s.statusOf(t, m), m.log)
		}
		time.Sleep(300 * time.Millisecond)
	}
	took := time.Since(start)
	st := s.statusOf(t, m)
	t.Logf("filled 16 MiB in %v at --fill-rate 4MiB; status:\n%s", took.Round(time.Millisecond), st)
	if took < 3*time.Second {
		t.Errorf("the fill took %v: faster than its rate allows", took)
	}
	if !regexp.MustCompile(`0 misses, 0 fetched, 0 received by multicast, 256 filled in the background`).MatchString(st) {
		t.Errorf("the cache does not count the blocks as filled in the background:\n%s", st)
	}
	run(t, "cmp", filepath.Join(m.dir, "templates", "lab", "disk.vmdk"), disk)
	if st := s.statusOf(t, m); !regexp.MustCompile(`0 misses, 0 fetched`).MatchString(st) {
		t.Errorf("reading the filled template missed the cache:\n%s", st)
	}
}
