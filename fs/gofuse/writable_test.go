//go:build linux

package gofuse_test

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// TestWritableEROFS: a clone that Config.Writable refuses answers every
// change with EROFS through the kernel and still reads; fsync reaches
// Config.OnSync.
func TestWritableEROFS(t *testing.T) {
	var refuse atomic.Bool
	var syncs atomic.Int64
	tm := remountWith(t, memstore.New(), t.TempDir(), gofuse.Options{}, func(c *fs.Config) {
		c.Writable = func(name string) error {
			if refuse.Load() {
				return errors.New("clone " + name + " is leased to ws-b until 10:32; opened read-only")
			}
			return nil
		}
		c.OnSync = func(name string) {
			if name == "alice" {
				syncs.Add(1)
			}
		}
	})
	cl := tm.path("clones/alice")
	f := openFile(t, cl+"/disk.vmdk", os.O_RDWR)
	pwrite(t, f, []byte("before"), 10)
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := syncs.Load(); n != 1 {
		t.Fatalf("OnSync called %d times after fsync", n)
	}
	d := openFile(t, cl+"/logs", os.O_RDONLY)
	if err := d.Sync(); err != nil {
		t.Fatal(err)
	}
	if n := syncs.Load(); n != 2 {
		t.Fatalf("OnSync called %d times after fsync of a directory", n)
	}

	refuse.Store(true)
	changes := []struct {
		name string
		do   func() error
	}{
		{"open for writing", func() error {
			f, err := os.OpenFile(cl+"/winxp.vmx", os.O_WRONLY, 0)
			if err == nil {
				f.Close()
			}
			return err
		}},
		{"create", func() error { return os.WriteFile(cl+"/new", []byte("x"), 0o644) }},
		{"mkdir", func() error { return os.Mkdir(cl+"/dir", 0o755) }},
		{"symlink", func() error { return os.Symlink("x", cl+"/link") }},
		{"rename", func() error { return os.Rename(cl+"/winxp.vmx", cl+"/renamed.vmx") }},
		{"unlink", func() error { return os.Remove(cl + "/winxp.nvram") }},
		{"rmdir", func() error { return os.Remove(cl + "/logs") }},
		{"truncate", func() error { return os.Truncate(cl+"/winxp.vmx", 3) }},
		{"chmod", func() error { return os.Chmod(cl+"/winxp.vmx", 0o600) }},
		{"fallocate", func() error { return syscall.Fallocate(int(f.Fd()), 0, 0, 100<<20) }},
	}
	for _, c := range changes {
		t.Run(c.name, func(t *testing.T) {
			if err := c.do(); !isErrno(err, syscall.EROFS) {
				t.Fatalf("%s: %v, want EROFS", c.name, err)
			}
		})
	}
	if _, err := os.ReadFile(cl + "/winxp.vmx"); err != nil {
		t.Fatalf("read of a read-only clone: %v", err)
	}
	if got := pread(t, f, 10, 6); string(got) != "before" {
		t.Fatalf("read through the open handle: %q", got)
	}
	if _, err := os.ReadDir(cl); err != nil {
		t.Fatalf("readdir of a read-only clone: %v", err)
	}
	refuse.Store(false)
	if err := os.Mkdir(cl+"/dir", 0o755); err != nil {
		t.Fatalf("mkdir once writable: %v", err)
	}
}
