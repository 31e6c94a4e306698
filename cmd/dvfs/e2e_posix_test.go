//go:build linux

package main

import (
	"crypto/sha256"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// A clone holding what QEMU and tools put next to a disk (hard links, a
// FIFO, a socket, a device node, other owners, set atimes) moves from
// workstation A to workstation B through the server: lstat of every entry
// (type, mode, owner, size, link count and which names share an inode,
// rdev, atime and mtime with nanoseconds) and every file's bytes are the
// same on B as A left them.
func TestClonePOSIXMovesBetweenWorkstations(t *testing.T) {
	s := startServer(t, t.TempDir())
	vm := filepath.Join(t.TempDir(), "tpl")
	os.MkdirAll(filepath.Join(vm, "logs"), 0o755)
	os.WriteFile(filepath.Join(vm, "disk.qcow2"), []byte(strings.Repeat("qcow", 100000)), 0o644)
	os.Link(filepath.Join(vm, "disk.qcow2"), filepath.Join(vm, "logs", "disk.qcow2"))
	os.WriteFile(filepath.Join(vm, "vm.conf"), []byte("memory = 512\n"), 0o644)
	s.dvfs("template", "publish", "--name", "qemu", vm)
	s.dvfs("clone", "create", "--template", "qemu", "vm1")

	work := t.TempDir()
	a := s.startMount(t, filepath.Join(work, "cacheA"), filepath.Join(work, "mntA"))
	cl := filepath.Join(a.dir, "clones", "vm1")
	if out, err := shell(fmt.Sprintf(`set -e
cd %s
mkfifo serial.fifo
mknod null c 1 3
mkdir -p run && chmod 2775 run && chgrp 5678 run
ln disk.qcow2 run/disk.lnk
echo data > notes && ln notes notes.bak && chown 1234:5678 notes
echo more >> notes.bak
rm logs/disk.qcow2
ln -s disk.qcow2 current
touch -h -m -d '2100-01-02 03:04:05.123456789' current
touch run/made-in-setgid
touch -a -d '2099-05-06 07:08:09.987654321' notes
touch -m -d '2001-02-03 04:05:06.000000007' vm.conf
`, cl)); err != nil {
		t.Fatalf("writing on A: %v\n%s", err, out)
	}
	// QEMU's monitor socket (bound through /proc/self/fd, so the path
	// fits in sun_path).
	bindSocket(t, filepath.Join(cl, "run"), "qmp.sock")
	// The setgid directory's time last: every change above touched it.
	if out, err := shell(fmt.Sprintf(`touch -m -d '2050-01-01 00:00:00.5' %s/run`, cl)); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	want := statTree(t, cl)
	a.unmount() // waits for the changes to reach the server
	b := s.startMount(t, filepath.Join(work, "cacheB"), filepath.Join(work, "mntB"))
	got := statTree(t, filepath.Join(b.dir, "clones", "vm1"))
	for _, p := range slices.Sorted(func(yield func(string) bool) {
		for p := range want {
			if !yield(p) {
				return
			}
		}
	}) {
		if got[p] != want[p] {
			t.Errorf("%s\n  on A: %s\n  on B: %s", p, want[p], got[p])
		}
		t.Logf("%s: %s", p, want[p])
	}
	for p := range got {
		if _, ok := want[p]; !ok {
			t.Errorf("B has %s, which A did not: %s", p, got[p])
		}
	}
	for _, must := range []string{"serial.fifo", "null", "run/qmp.sock", "run/disk.lnk", "notes.bak"} {
		if _, ok := want[must]; !ok {
			t.Errorf("A lacks %s: the test made nothing to compare", must)
		}
	}
}

// statTree describes every entry under dir by relative path: lstat's
// fields that a move must keep, the other names of its inode, and a
// regular file's sha256.
func statTree(t *testing.T, dir string) map[string]string {
	t.Helper()
	byIno := map[uint64][]string{}
	sts := map[string]unix.Stat_t{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		sts[rel] = st
		byIno[st.Ino] = append(byIno[st.Ino], rel)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for rel, st := range sts {
		s := fmt.Sprintf("mode %#o %d:%d size %d nlink %d rdev %d:%d atime %d.%09d mtime %d.%09d",
			st.Mode, st.Uid, st.Gid, st.Size, st.Nlink, unix.Major(st.Rdev), unix.Minor(st.Rdev),
			st.Atim.Sec, st.Atim.Nsec, st.Mtim.Sec, st.Mtim.Nsec)
		if names := byIno[st.Ino]; len(names) > 1 {
			s += " names " + strings.Join(slices.Sorted(slices.Values(names)), ",")
		}
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b, err := os.ReadFile(filepath.Join(dir, rel))
			if err != nil {
				t.Fatal(err)
			}
			s += fmt.Sprintf(" sha256 %x", sha256.Sum256(b))
		}
		out[rel] = s
	}
	return out
}

// bindSocket binds a Unix socket called name in dir and closes it, which
// leaves the socket's entry.
func bindSocket(t *testing.T, dir, name string) {
	t.Helper()
	dfd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(dfd)
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: fmt.Sprintf("/proc/self/fd/%d/%s", dfd, name)}); err != nil {
		t.Fatalf("binding a socket in %s: %v", dir, err)
	}
}
