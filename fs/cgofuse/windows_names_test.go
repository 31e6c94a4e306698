//go:build linux && cgo && fuse3

package cgofuse_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/cgofuse"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// mountState mounts w through the adapter over meta and state, with
// Windows names on or off, until unmount is called (or the test ends).
func mountState(t testing.TB, w *fstest.World, meta blockstore.MetaStore, state string, windows bool) (m fstest.Mounted, unmount func()) {
	t.Helper()
	fstest.RequireFuse(t)
	core, err := fs.New(fs.Config{Blocks: w.Blocks, Catalog: w.Catalog, Meta: meta, StateDir: state,
		MapNames: windows, CaseInsensitive: windows})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	srv, err := cgofuse.Mount(dir, core, cgofuse.Options{})
	if err != nil {
		core.Close(context.Background())
		t.Fatal(err)
	}
	var once sync.Once
	unmount = func() {
		once.Do(func() {
			if err := srv.Unmount(); err != nil {
				t.Errorf("unmount: %v", err)
				unix.Unmount(dir, unix.MNT_DETACH)
				srv.Wait()
			}
			if err := core.Close(context.Background()); err != nil {
				t.Errorf("close core: %v", err)
			}
		})
	}
	t.Cleanup(unmount)
	return fstest.Mounted{Dir: dir, Core: core}, unmount
}

// TestWindowsNames mounts, through libfuse3 with the Windows options on,
// a template and a clone published on Linux with names Win32 cannot open
// and names that differ only in case: every entry lists and reads back
// its content; a clone file opens in another case; names made and
// renamed through the mount are stored as the bytes they stand for, as a
// mount with the options off then shows.
func TestWindowsNames(t *testing.T) {
	w := fstest.NewWorld()
	ctx := context.Background()
	if _, err := w.AddTemplate(ctx, "lin", fstest.LinuxNames()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddClone(ctx, "c", fstest.LinuxNames()); err != nil {
		t.Fatal(err)
	}
	want := map[string][]byte{}
	for _, e := range fstest.LinuxNames() {
		if e.Mode.IsRegular() {
			want[e.Path] = e.Bytes()
		}
	}
	meta, state := memstore.New(), t.TempDir()
	m, unmount := mountState(t, w, meta, state, true)
	dir := m.Dir

	for _, top := range []string{"templates/lin", "clones/c"} {
		read := 0
		err := filepath.WalkDir(filepath.Join(dir, top), func(p string, d os.DirEntry, err error) error {
			if err != nil || d.IsDir() {
				return err
			}
			rel, _ := filepath.Rel(filepath.Join(dir, top), p)
			stored := fstest.StoredOf(filepath.ToSlash(rel))
			got, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			fstest.SameBytes(t, top+"/"+rel, got, want[stored])
			read++
			return nil
		})
		if err != nil {
			t.Fatalf("walk %s: %v", top, err)
		}
		if read != len(want) {
			t.Errorf("%s: read %d files, want %d", top, read, len(want))
		}
	}
	ls := fstest.Ls(t, filepath.Join(dir, "clones/c"))
	for _, name := range []string{"a\uF03Ab.txt", "CO\uF04E", "nu\uF06C.lck", "dot\uF02E", "space\uF020", "DISK.VMDK"} {
		if !slices.Contains(ls, name) {
			t.Errorf("clones/c lists %+q, without %+q", ls, name)
		}
	}

	// Open in another case; an exclusive create in another case fails.
	c := filepath.Join(dir, "clones/c")
	fstest.SameBytes(t, "disk.Vmdk", fstest.ReadFile(t, filepath.Join(c, "disk.Vmdk")), want["DISK.VMDK"])
	fstest.SameBytes(t, "SUB/X\uF03FY", fstest.ReadFile(t, filepath.Join(c, "SUB/X\uF03FY")), want["sub/x?y"])
	if err := os.WriteFile(filepath.Join(c, "New\uF03A1.vmx"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err := os.OpenFile(filepath.Join(c, "NEW\uF03A1.VMX"), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if !errors.Is(err, syscall.EEXIST) {
		t.Errorf("exclusive create in another case: %v, want EEXIST", err)
	}
	// A name no mapping makes is refused.
	if err := os.WriteFile(filepath.Join(c, "a:b"), nil, 0o644); !errors.Is(err, syscall.EINVAL) {
		t.Errorf("create a:b: %v, want EINVAL", err)
	}
	if err := os.Rename(filepath.Join(c, "new\uF03A1.vmx"), filepath.Join(c, "Renamed\uF03F.vmx")); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(filepath.Join(c, "co\uF04E"), filepath.Join(c, "aux\uF02E")); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(filepath.Join(c, "VM\uF02A"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(c, "SPACE\uF020")); err != nil {
		t.Fatal(err)
	}
	unmount()

	// The same state with the options off: the stored bytes, POSIX names.
	m, _ = mountState(t, w, meta, state, false)
	dir = m.Dir
	c = filepath.Join(dir, "clones/c")
	ls = fstest.Ls(t, c)
	for _, name := range []string{"Renamed?.vmx", "aux.", "VM*", "a:b.txt", "Disk.vmdk", "disk.vmdk", "DISK.VMDK"} {
		if !slices.Contains(ls, name) {
			t.Errorf("POSIX mount lists %q, without %q", ls, name)
		}
	}
	for _, name := range []string{"CON", "space ", "New:1.vmx"} {
		if slices.Contains(ls, name) {
			t.Errorf("POSIX mount still lists %q", name)
		}
	}
	fstest.SameBytes(t, "Renamed?.vmx", fstest.ReadFile(t, filepath.Join(c, "Renamed?.vmx")), []byte("hello"))
	if _, err := os.Stat(filepath.Join(c, "disk.VMDK")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("POSIX mount: disk.VMDK: %v, want ENOENT", err)
	}
}
