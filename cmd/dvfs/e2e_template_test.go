//go:build linux

package main

import (
	"bytes"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
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
func TestPublishSurvivesServerKill(t *testing.T) {
	t.Parallel()
	data := t.TempDir()
	s := startServer(t, data)
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	writeVMDisk(t, filepath.Join(vm, "disk.vmdk"), 512<<20, 2)

	pub := make(chan error, 1)
	go func() {
		_, err := s.try("template", "publish", "--name", "vm", vm)
		pub <- err
	}()
	// Kill once a good part of the data (340 MiB) has reached the store:
	// the server makes uploads durable every 64 MiB, so by 200 MiB some
	// rounds are done, and what followed them is lost.
	store := filepath.Join(data, "store")
	base := diskUse(t, store)
	deadline := time.Now().Add(2 * time.Minute)
	for diskUse(t, store)-base < 200<<20 {
		if time.Now().After(deadline) {
			t.Fatal("publish made no progress")
		}
		select {
		case err := <-pub:
			t.Fatalf("publish finished before the kill (err %v); make the file bigger", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
	s.stop(syscall.SIGKILL)
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
