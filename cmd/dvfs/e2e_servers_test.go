//go:build linux

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/etcdmeta/etcdtest"
)

// threeServers starts a three-member etcd cluster, a versitygw and three
// dvfs servers over both, with one signing key and admin token; it
// returns the cluster, the bucket's directory and the servers.
func threeServers(t *testing.T) (*etcdtest.Cluster, string, []*serverProc, []string) {
	t.Helper()
	c, bucket, flags := etcdAndS3(t)
	var servers []*serverProc
	var first string
	for i := range 3 {
		data := t.TempDir()
		if i == 0 {
			first = data
		} else {
			shareRepoKeys(t, first, data)
		}
		servers = append(servers, startServerAt(t, data, "127.0.0.1:0", flags...))
	}
	return c, bucket, servers, flags
}

// Three dvfs servers over one three-member etcd cluster and one object
// store: a template published through the first, a clone mounted through
// the second (the third listed after it) and written; the second server
// and an etcd member are killed with SIGKILL while the clone syncs. The
// mount goes on through the third, and everything it fsynced is on the
// repository, read through the first. Then the clone is taken over
// through the first server: the old holder's next commit, through the
// third, is fenced, and its changes become a conflict clone.
func TestThreeServers(t *testing.T) {
	// Its own etcd cluster, object store and servers, and mostly waiting:
	// it runs two at a time with the package's other long waiting tests,
	// after the rest.
	t.Parallel()
	c, _, servers, flags := threeServers(t)
	s1, s2, s3 := servers[0], servers[1], servers[2]

	// A server with a key of its own refuses to start.
	out, err := command(nil, append([]string{"serve", "--data", t.TempDir(), "--listen", "127.0.0.1:0"}, flags...)...).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "is not the repository's") {
		t.Fatalf("a server with another signing key: %v\n%s", err, out)
	}

	tmpl := publishBase(t, s1, "lab")
	work := t.TempDir()
	m := s2.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"), "--server", s2.url+","+s3.url, "--sync-interval", "300ms")
	path := filepath.Join(m.dir, "clones", "lab", "disk.vmdk")
	const records = 400 // the writer fsyncs every 8
	var kill sync.Once
	wait := runWriter(t, path, 0, records, 15*time.Millisecond, func(n int) {
		if n >= records/2 {
			kill.Do(func() {
				s2.stop(syscall.SIGKILL)
				c.Members[0].Kill()
			})
		}
	})
	synced, touched := wait()
	if synced != records-1 {
		t.Fatalf("the writer stopped at record %d of %d; mount log:\n%s", synced, records, m.log)
	}
	waitServerHas(t, s1, "lab", tmpl, synced, touched, 2*time.Minute, m)
	st := s3.statusOf(t, m)
	if !strings.Contains(st, "server: "+s3.url) {
		t.Errorf("the mount does not say it moved to the third server:\n%s", st)
	}

	// A takeover through the first server fences the holder, which
	// commits through the third.
	s1.dvfs("clone", "takeover", "--cache", filepath.Join(work, "cacheB"), "lab")
	late := []byte("written after the takeover\n")
	if err := writeSync(filepath.Join(m.dir, "clones", "lab", "late.txt"), late); err != nil {
		t.Fatalf("the old holder's write: %v", err)
	}
	var conflict string
	deadline := time.Now().Add(60 * time.Second)
	for conflict == "" && time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		if m := regexp.MustCompile(`(?m)^(lab-conflict-\S+)`).FindStringSubmatch(s1.dvfs("clone", "list")); m != nil {
			conflict = m[1]
		}
	}
	if conflict == "" {
		t.Fatalf("no conflict clone appeared; mount log:\n%s", m.log)
	}
	exp := filepath.Join(t.TempDir(), "conflict")
	s1.dvfs("clone", "export", conflict, exp)
	if got, _ := os.ReadFile(filepath.Join(exp, "late.txt")); string(got) != string(late) {
		t.Fatalf("the conflict clone holds %q, want the fenced write", got)
	}
	exp = filepath.Join(t.TempDir(), "lab")
	s1.dvfs("clone", "export", "lab", exp)
	if _, err := os.Stat(filepath.Join(exp, "late.txt")); err == nil {
		t.Fatal("the fenced holder's write reached the clone it lost")
	}
	t.Logf("%d records fsynced through two servers, the first killed at record %d with an etcd member; conflict clone %s", synced+1, records/2, conflict)
	m.unmount()
}

// A publish through two servers of one repository, the first killed with
// SIGKILL (and an etcd member with it) while the blocks go up: the
// publish goes on through the second, sends again what the killed server
// had taken without storing (the commit names it missing), and its one
// version exports byte-exact.
func TestPublishAcrossServerKill(t *testing.T) {
	// Its own etcd cluster, object store and servers, and mostly waiting:
	// it runs two at a time with the package's other long waiting tests,
	// after the rest.
	t.Parallel()
	c, _, servers, _ := threeServers(t)
	s1, s2 := servers[0], servers[1]
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	os.WriteFile(filepath.Join(vm, "vm.vmx"), []byte("displayName = \"vm\"\n"), 0o644)
	writeVMDisk(t, filepath.Join(vm, "vm.vmdk"), 256<<20, 7)
	// The first server is reached through a proxy that stops forwarding
	// after 32 MiB of uploads: it is killed with the blocks going up,
	// however fast this machine is.
	g := newUploadGate(t, s1.url, 32<<20)
	both := "--server=" + g.url + "," + s2.url
	done := make(chan error, 1)
	var out string
	go func() {
		var err error
		out, err = s2.try(both, "template", "publish", "--compress=yes", "--name", "vm", vm)
		done <- err
	}()
	deadline := time.After(2 * time.Minute)
	for !g.holding() || g.answered.Load() < 1 {
		select {
		case err := <-done:
			t.Fatalf("the publish ended before the kill (%v):\n%s", err, out)
		case <-deadline:
			t.Fatalf("the publish made no progress: %d upload bytes forwarded, %d uploads answered", g.sent.Load(), g.answered.Load())
		case <-time.After(20 * time.Millisecond):
		}
	}
	s1.stop(syscall.SIGKILL)
	c.Members[2].Kill()
	g.close()
	if err := <-done; err != nil {
		t.Fatalf("the publish did not go on through the second server: %v\n%s", err, out)
	}
	t.Logf("the publish with its first server killed:\n%s", out)
	if list := s2.dvfs("template", "list"); !strings.Contains(list, "vm") {
		t.Fatalf("the publish reported success, and no version is listed:\n%s", list)
	}
	exp := filepath.Join(t.TempDir(), "exp")
	s2.dvfs("template", "export", "vm", exp)
	sameTree(t, vm, exp)
}
