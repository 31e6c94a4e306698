//go:build linux

package gofuse_test

import (
	"os"
	"slices"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs/fstest"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// TestRemount changes a clone without any fsync, unmounts cleanly and
// mounts the same state again: everything is there.
func TestRemount(t *testing.T) {
	meta, state := memstore.New(), t.TempDir()
	tm := remount(t, meta, state, gofuse.Options{})
	cl := tm.path("clones/alice")
	disk := fstest.VMEntry(2, "disk.vmdk").Bytes()
	copy(disk[bs+5:], "overwritten")
	disk = append(disk[:len(disk)-1000], make([]byte, 3*bs)...)
	copy(disk[len(disk)-10:], "grown tail")

	steps := []func() error{
		func() error { return os.Mkdir(cl+"/vm.lck", 0o755) },
		func() error { return os.WriteFile(cl+"/vm.lck/M1.lck", []byte("lock"), 0o600) },
		func() error { return os.WriteFile(cl+"/new.log", []byte("a log line\n"), 0o644) },
		func() error { return os.Rename(cl+"/winxp.vmx", cl+"/renamed.vmx") },
		func() error { return os.Remove(cl + "/winxp.nvram") },
		func() error { return os.Symlink("renamed.vmx", cl+"/vmx-link") },
		func() error {
			f, err := os.OpenFile(cl+"/disk.vmdk", os.O_RDWR, 0)
			if err != nil {
				return err
			}
			defer f.Close()
			if _, err := f.WriteAt([]byte("overwritten"), bs+5); err != nil {
				return err
			}
			if err := f.Truncate(fstest.VMEntry(2, "disk.vmdk").Size - 1000); err != nil {
				return err
			}
			_, err = f.WriteAt([]byte("grown tail"), int64(len(disk)-10))
			return err
		},
		func() error {
			f, err := os.OpenFile(cl+"/huge.img", os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				return err
			}
			defer f.Close()
			_, err = f.WriteAt([]byte("far away"), 5<<30)
			return err
		},
	}
	for i, step := range steps {
		if err := step(); err != nil {
			t.Fatalf("step %d: %v", i, err)
		}
	}
	check := func(when string, cl string) {
		want := []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "huge.img", "logs", "new.log", "renamed.vmx", "vm.lck", "vmx-link"}
		if got := ls(t, cl); !slices.Equal(got, want) {
			t.Fatalf("%s: clone holds %q, want %q", when, got, want)
		}
		sameBytes(t, when+" disk.vmdk", readFile(t, cl+"/disk.vmdk"), disk)
		sameBytes(t, when+" new.log", readFile(t, cl+"/new.log"), []byte("a log line\n"))
		sameBytes(t, when+" lock", readFile(t, cl+"/vm.lck/M1.lck"), []byte("lock"))
		sameBytes(t, when+" renamed", readFile(t, cl+"/renamed.vmx"), fstest.VMEntry(2, "winxp.vmx").Bytes())
		if l, err := os.Readlink(cl + "/vmx-link"); err != nil || l != "renamed.vmx" {
			t.Fatalf("%s: readlink %q, %v", when, l, err)
		}
		f := openFile(t, cl+"/huge.img", os.O_RDONLY)
		sameBytes(t, when+" huge.img", pread(t, f, 5<<30-2, 100), append([]byte{0, 0}, "far away"...))
		f.Close()
		sameBytes(t, when+" template", readFile(t, tm.path("templates/winxp@2/disk.vmdk")), fstest.VMEntry(2, "disk.vmdk").Bytes())
	}
	check("before unmount", cl)
	tm.unmount(t)
	tm = remount(t, meta, state, gofuse.Options{})
	check("after remount", tm.path("clones/alice"))
}
