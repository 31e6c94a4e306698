//go:build linux

package gofuse_test

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// helperOwners mounts the POSIX world at dir/mnt as whoever runs it,
// prints the owner of each template entry it names, and unmounts.
func helperOwners(dir string) {
	w, err := fstest.POSIXWorld(context.Background())
	check(err)
	core, err := fs.New(fs.Config{Blocks: w.Blocks, Catalog: w.Catalog, Meta: memstore.New(), StateDir: filepath.Join(dir, "state")})
	check(err)
	mnt := filepath.Join(dir, "mnt")
	srv, err := gofuse.Mount(mnt, core, gofuse.Options{})
	check(err)
	for _, p := range []string{"disk.vmdk", "owned.txt"} {
		fi, err := os.Lstat(filepath.Join(mnt, "templates", fstest.POSIXName, p))
		check(err)
		st := fi.Sys().(*syscall.Stat_t)
		fmt.Printf("%s %d:%d\n", p, st.Uid, st.Gid)
	}
	check(srv.Unmount())
	check(core.Close(context.Background()))
}

// TestNonRootMountKeepsOwners: a user who mounts (through fusermount3,
// as at login) sees a template's root-owned files as root's and other
// owners as theirs, not every owner-0 file as the mounting user's (what
// go-fuse's UID option did).
func TestNonRootMountKeepsOwners(t *testing.T) {
	requireFuse(t)
	if os.Geteuid() != 0 {
		t.Skip("needs root to run the mount as another user")
	}
	if _, err := exec.LookPath("fusermount3"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("fusermount3 is missing (Debian fuse3)")
		}
		t.Skip("fusermount3 is missing")
	}
	// A Debian system lets every user open /dev/fuse (udev makes it
	// 0666); a container may leave it root's. The test's user needs it
	// for the time of the test.
	if fi, err := os.Stat("/dev/fuse"); err == nil && fi.Mode().Perm()&0o006 != 0o006 {
		if err := os.Chmod("/dev/fuse", fi.Mode().Perm()|0o666); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod("/dev/fuse", fi.Mode().Perm()) })
	}
	const nobody = 65534
	dir, err := os.MkdirTemp("", "dvfs-owner")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	for _, d := range []string{dir, filepath.Join(dir, "mnt"), filepath.Join(dir, "state")} {
		os.MkdirAll(d, 0o700)
		if err := os.Chown(d, nobody, nobody); err != nil {
			t.Fatal(err)
		}
	}
	// The test binary lies in go's 0700 build directory: nobody runs a
	// copy.
	self, err := os.ReadFile(os.Args[0])
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "gofuse.test")
	if err := os.WriteFile(bin, self, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "-test.run=^$", dir)
	cmd.Env = append(os.Environ(), helperEnv+"=owners", "HOME="+dir, "GOCOVERDIR="+dir)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: nobody, Gid: nobody}}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("the mount as nobody: %v\n%s", err, out)
	}
	got := strings.TrimSpace(string(out))
	if want := "disk.vmdk 0:0\nowned.txt 1234:5678"; got != want {
		t.Errorf("owners seen through a mount by nobody:\n%s\nwant\n%s", got, want)
	}
}
