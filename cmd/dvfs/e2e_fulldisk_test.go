//go:build linux

package main

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// smallFS mounts a 200 MiB filesystem of kind ("tmpfs" or "ext4", an
// image on a loop device) under the test's temp dir.
func smallFS(t *testing.T, kind string) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), kind)
	os.Mkdir(dir, 0o755)
	var out []byte
	var err error
	switch kind {
	case "tmpfs":
		err = unix.Mount("tmpfs", dir, "tmpfs", 0, "size=200m")
	case "ext4":
		img := filepath.Join(t.TempDir(), "cache.img")
		if err = os.Truncate(img, 0); errors.Is(err, os.ErrNotExist) {
			var f *os.File
			if f, err = os.Create(img); err == nil {
				err = f.Truncate(200 << 20)
				f.Close()
			}
		}
		if err == nil {
			if out, err = exec.Command("mkfs.ext4", "-q", "-F", img).CombinedOutput(); err == nil {
				out, err = exec.Command("mount", "-o", "loop", img, dir).CombinedOutput()
			}
		}
	}
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root and must mount a %s: %v %s", kind, err, out)
		}
		t.Skipf("cannot mount a %s (not root?): %v %s; this never skips in CI", kind, err, out)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	return dir
}

// The cache's disk fills up under a clone's writer (1 MiB writes, fsync
// every 8 MiB): the writer gets ENOSPC, the mount goes on serving, every
// byte fsynced reads back, and once space returns (a filler file is
// deleted) writes work again and everything reaches the server.
func TestFullCacheDisk(t *testing.T) {
	// Most of its time is waiting (on an outage, restarts, scrapes): it
	// runs two at a time with the package's other long waiting tests,
	// after the rest.
	t.Parallel()
	for _, kind := range []string{"tmpfs", "ext4"} {
		t.Run(kind, func(t *testing.T) { testFullCacheDisk(t, kind) })
	}
}

func testFullCacheDisk(t *testing.T, kind string) {
	disk := smallFS(t, kind)
	s := startServer(t, t.TempDir())
	publishSmall(t, s, "lab")
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, 40<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	m := s.startMount(t, filepath.Join(disk, "cache"), filepath.Join(t.TempDir(), "mnt"), "--min-free", "32MiB", "--sync-interval", "1s", "--flush-timeout", "2m")
	path := filepath.Join(m.dir, "clones", "lab", "big.img")

	rng := rand.NewChaCha8([32]byte{'f'})
	var want []byte // every byte written and fsynced
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 1<<20)
	var werr error
	var pending []byte
	for len(want) < 400<<20 && werr == nil {
		rng.Read(chunk)
		if _, werr = f.WriteAt(chunk, int64(len(want)+len(pending))); werr != nil {
			break
		}
		pending = append(pending, chunk...)
		if len(pending) == 8<<20 {
			if werr = f.Sync(); werr == nil {
				want, pending = append(want, pending...), nil
			}
		}
	}
	if !errors.Is(werr, syscall.ENOSPC) {
		t.Fatalf("writing into the clone on a full cache disk: %v after %d MiB fsynced, want ENOSPC", werr, len(want)>>20)
	}
	f.Close()
	t.Logf("%s: writer got %v after %d MiB fsynced", kind, werr, len(want)>>20)
	select {
	case <-m.done:
		t.Fatalf("the mount died on the full disk:\n%s", m.log)
	default:
	}
	// The mount serves: fsynced bytes read back, the clone lists, other
	// files read.
	if got, err := os.ReadFile(path); err != nil || !bytes.Equal(got[:len(want)], want) {
		t.Fatalf("fsynced data after the disk filled: %d bytes, %v", len(got), err)
	}
	if _, err := os.ReadFile(filepath.Join(m.dir, "clones", "lab", "disk.vmx")); err != nil {
		t.Fatal(err)
	}
	// What was written syncs with the disk at the reserve.
	if !m.log.waitFor(time.Minute, func(string) bool { return strings.Contains(s.statusOf(t, m), ", synced;") }) {
		t.Fatalf("writeback stalled with the disk at the reserve: dvfs status says\n%s\nmount log:\n%s", s.statusOf(t, m), m.log)
	}
	t.Logf("dvfs status with the disk full:\n%s", s.statusOf(t, m))

	// Space returns: writes work again, by themselves.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	more := make([]byte, 8<<20)
	rng.Read(more)
	if err := writeAtSync(path, more, int64(len(want))); err != nil {
		t.Fatalf("writing after space returned: %v\n%s", err, m.log)
	}
	want = append(want, more...)
	out, err := exec.Command(dvfsBin, "umount", m.dir).CombinedOutput()
	if err != nil {
		t.Fatalf("dvfs umount after space returned: %v\n%s\nmount log:\n%s", err, out, m.log)
	}
	<-m.done
	// A second workstation (its own cache, off the small disk) reads it all.
	b := s.startMount(t, filepath.Join(t.TempDir(), "cacheB"), filepath.Join(t.TempDir(), "mntB"))
	got, err := os.ReadFile(filepath.Join(b.dir, "clones", "lab", "big.img"))
	if err != nil || len(got) < len(want) || !bytes.Equal(got[:len(want)], want) {
		t.Fatalf("the server's clone: %d bytes (%v), want the %d written and fsynced", len(got), err, len(want))
	}
}

// writeAtSync writes data at off into path (created if absent) and fsyncs
// it.
func writeAtSync(path string, data []byte, off int64) error {
	f, err := os.OpenFile(path, os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return err
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		return err
	}
	return f.Sync()
}

// freeBytes is what an unprivileged writer may still put on dir's disk.
func freeBytes(t *testing.T, dir string) int64 {
	t.Helper()
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	return int64(st.Bavail) * int64(st.Bsize)
}

// Template reads on a cache disk that has less room than the template:
// blocks stop being cached at twice --min-free (the band above it stays
// for clone writes), every read is served all the same, byte-exact, and
// the user can still write a clone. Before, the cache wrote blocks until
// the disk was full: reads failed and the clone's writes had no room.
func TestFullDiskTemplateReads(t *testing.T) {
	t.Parallel()
	disk := smallFS(t, "tmpfs")
	s := startServer(t, t.TempDir())
	tmpl, _ := publishRandom(t, s, "big", 96<<20, 'r')
	s.dvfs("clone", "create", "--template", "big", "lab")
	m := s.startMount(t, filepath.Join(disk, "cache"), filepath.Join(t.TempDir(), "mnt"), "--min-free", "32MiB", "--multicast=false")
	// Leave 110 MiB: room for part of the template above the cache's
	// 64 MiB reserve, not for all of it.
	filler := filepath.Join(disk, "filler")
	if err := os.WriteFile(filler, make([]byte, freeBytes(t, disk)-110<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(filepath.Join(m.dir, "templates", "big", "disk.vmdk"))
	if err != nil || !bytes.Equal(got, tmpl) {
		t.Fatalf("reading the template with the cache disk nearly full: %d bytes, %v\n%s", len(got), err, m.log)
	}
	free := freeBytes(t, disk)
	st := s.statusOf(t, m)
	t.Logf("after reading 96 MiB: %d MiB free on the cache disk; status:\n%s", free>>20, st)
	if free < 60<<20 {
		t.Errorf("the cache left %d MiB free, below its 64 MiB reserve (less a batch)", free>>20)
	}
	if !strings.Contains(st, "read from the server without being cached") {
		t.Errorf("status does not say blocks went uncached:\n%s", st)
	}
	// The band above --min-free is the clone's.
	data := make([]byte, 16<<20)
	rand.NewChaCha8([32]byte{'w'}).Read(data)
	if err := writeSync(filepath.Join(m.dir, "clones", "lab", "work.img"), data); err != nil {
		t.Fatalf("a clone write with the template cache at its reserve: %v\n%s", err, m.log)
	}
	select {
	case <-m.done:
		t.Fatalf("the mount died:\n%s", m.log)
	default:
	}
}

// The server's disk fills up under uploads. Badger maps its files, and a
// full disk under a mapped page is a SIGBUS, so the server keeps
// --min-free and refuses (507) an upload that would go below it: a publish
// fails saying the server's disk is full, a workstation's clone writes
// wait in its cache with dvfs status saying why, and the server goes on
// serving. Once space is freed (a filler file deleted), everything syncs
// by itself: dvfs umount succeeds and the clone exports byte-exact.
func TestServerDiskFull(t *testing.T) {
	// Mostly waiting on retries: it runs with the other waiting tests.
	t.Parallel()
	data := smallFS(t, "ext4")
	s := startServerAt(t, data, "127.0.0.1:0", "--min-free", "32MiB")
	publishSmall(t, s, "lab")
	m := s.startMount(t, filepath.Join(t.TempDir(), "cache"), filepath.Join(t.TempDir(), "mnt"), "--sync-interval", "1s", "--flush-timeout", "2m")

	// Leave the reserve and 16 MiB (and ext4's 5% for root): room for an
	// upload batch or so of the 96 MiB the clone gets.
	filler := filepath.Join(data, "filler")
	f, err := os.Create(filler)
	if err != nil {
		t.Fatal(err)
	}
	if err := unix.Fallocate(int(f.Fd()), 0, 0, freeBytes(t, data)-(32+16)<<20); err != nil {
		t.Fatal(err)
	}
	f.Close()
	t.Logf("server disk: %d MiB free with the filler", freeBytes(t, data)>>20)

	want := make([]byte, 96<<20)
	rand.NewChaCha8([32]byte{'s'}).Read(want)
	path := filepath.Join(m.dir, "clones", "lab", "big.img")
	if err := writeAtSync(path, want, 0); err != nil {
		t.Fatal(err)
	}
	if !m.log.waitFor(2*time.Minute, func(string) bool {
		st := s.statusOf(t, m)
		return strings.Contains(st, "SYNC STALLED") && strings.Contains(st, "disk is full")
	}) {
		t.Fatalf("dvfs status does not say the sync waits for the server's disk:\n%s\nserver log:\n%s", s.statusOf(t, m), s.log)
	}
	t.Logf("dvfs status with the server's disk full:\n%s", s.statusOf(t, m))

	big := filepath.Join(t.TempDir(), "big")
	os.Mkdir(big, 0o755)
	os.WriteFile(filepath.Join(big, "disk.vmdk"), want[:32<<20], 0o644)
	out, err := s.try("template", "publish", "--name", "big", big)
	if err == nil || !strings.Contains(out, "disk is full") {
		t.Fatalf("a publish to a full server: %v\n%s", err, out)
	}
	t.Logf("publish to the full server: %s", strings.TrimSpace(out))
	select {
	case <-s.done:
		t.Fatalf("the server died on its full disk:\n%s", s.log)
	default:
	}
	if list := s.dvfs("template", "list"); !strings.Contains(list, "small") {
		t.Fatalf("the server does not serve its templates with its disk full:\n%s", list)
	}

	// Space returns: the clone syncs and the publish goes through, with
	// nothing restarted.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	m.unmount()
	exp := filepath.Join(t.TempDir(), "lab")
	s.dvfs("clone", "export", "lab", exp)
	if got, err := os.ReadFile(filepath.Join(exp, "big.img")); err != nil || !bytes.Equal(got, want) {
		t.Fatalf("the server's clone after space returned: %d bytes (%v), want the %d written", len(got), err, len(want))
	}
	s.dvfs("template", "publish", "--name", "big", big)
}

// publishSmall publishes template "small", a VM folder of one small file,
// and makes clone of it.
func publishSmall(t *testing.T, s *serverProc, clone string) {
	t.Helper()
	vm := filepath.Join(t.TempDir(), "tpl")
	os.Mkdir(vm, 0o755)
	os.WriteFile(filepath.Join(vm, "disk.vmx"), []byte("displayName = \"small\"\n"), 0o644)
	s.dvfs("template", "publish", "--name", "small", vm)
	s.dvfs("clone", "create", "--template", "small", clone)
}
