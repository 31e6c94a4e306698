package fs_test

import (
	"errors"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// wineNoRemoveAll is why the tests of Drop skip under Wine: Drop removes
// the overlay's directory with os.RemoveAll, which on Windows deletes by
// FileDispositionInformationEx, and Wine has no such call ("unlinkat:
// Invalid function"). Windows has it since Windows 10 1607.
const wineNoRemoveAll = "Drop's os.RemoveAll needs FileDispositionInformationEx, which Wine lacks"

// overlayKeys lists the Meta keys of clone name's overlay.
func overlayKeys(t *testing.T, e *env, name string) []string {
	t.Helper()
	var keys []string
	err := e.meta.ListMeta(ctx, "ovl/"+name+"/", func(key string, _ []byte) error {
		keys = append(keys, key)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return keys
}

// change makes alice differ from its manifest in every way an overlay
// can: a copied-up block, a new file, a directory, a rename, an unlink.
func change(t *testing.T, fsys *fs.FS) {
	t.Helper()
	h := openW(t, fsys, root+"/disk.vmdk")
	writeAt(t, h, []byte("changed"), 2*bs+3)
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	create(t, fsys, root, "new", []byte("abc"))
	d := dirOf(t, fsys, root)
	if _, err := d.Mkdir(ctx, "dir", 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.Rename(ctx, "winxp.vmx", d, "renamed.vmx", 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Unlink(ctx, "winxp.nvram"); err != nil {
		t.Fatal(err)
	}
}

// pristine checks that alice reads as its catalog manifest.
func pristine(t *testing.T, fsys *fs.FS) {
	t.Helper()
	want := []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs", "winxp.nvram", "winxp.vmx"}
	if got := ls(t, fsys, root); !slices.Equal(got, want) {
		t.Fatalf("after drop: %v, want %v", got, want)
	}
	sameBytes(t, "disk.vmdk", readAll(t, fsys, root+"/disk.vmdk"), fstest.VMEntry(2, "disk.vmdk").Bytes())
	ents, err := fsys.Overlay(ctx, "alice")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if len(e.Local) != 0 && slices.ContainsFunc(e.Local, func(w uint64) bool { return w != 0 }) {
			t.Fatalf("%s has local blocks after drop", e.Path)
		}
	}
}

func TestDrop(t *testing.T) {
	disktest.SkipUnderWine(t, wineNoRemoveAll)
	tests := []struct {
		name   string
		reload bool // Close and mount again before Drop: the clone is not loaded
	}{
		{"loaded", false},
		{"not loaded", true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fsys := e.mountWith(t, func(*fs.Config) {})
			change(t, fsys)
			oldDir := dirOf(t, fsys, root)
			if tc.reload {
				if err := fsys.Close(ctx); err != nil {
					t.Fatal(err)
				}
				fsys = e.mountWith(t, func(*fs.Config) {})
			}
			before := len(overlayKeys(t, e, "alice"))
			if err := fsys.Drop(ctx, "alice"); err != nil {
				t.Fatalf("drop: %v", err)
			}
			if keys := overlayKeys(t, e, "alice"); len(keys) != 0 {
				t.Fatalf("%d of %d keys left: %v", len(keys), before, keys)
			}
			if _, err := os.Stat(filepath.Join(e.state, "alice")); !errors.Is(err, os.ErrNotExist) {
				t.Fatalf("data files left: %v", err)
			}
			if !tc.reload {
				// Nodes of the dropped clone change nothing.
				_, err := oldDir.Mkdir(ctx, "stale", 0o755)
				isErr(t, "mkdir in a dropped clone", err, fs.ErrNotExist)
				if keys := overlayKeys(t, e, "alice"); len(keys) != 0 {
					t.Fatalf("a stale node wrote %v", keys)
				}
			}
			pristine(t, fsys)
			// And the fresh overlay survives a remount.
			if err := fsys.Close(ctx); err != nil {
				t.Fatal(err)
			}
			pristine(t, e.mountWith(t, func(*fs.Config) {}))
		})
	}
}

func TestDropBusy(t *testing.T) {
	disktest.SkipUnderWine(t, wineNoRemoveAll)
	e := newEnv(t)
	fsys := e.mountWith(t, func(*fs.Config) {})
	change(t, fsys)
	keys := overlayKeys(t, e, "alice")
	for _, flags := range []int{os.O_RDONLY, os.O_RDWR} {
		f, _ := walk(t, fsys, root+"/new").(fs.File)
		h, err := f.Open(ctx, flags)
		if err != nil {
			t.Fatal(err)
		}
		err = fsys.Drop(ctx, "alice")
		isErr(t, "drop with an open file", err, fs.ErrBusy)
		if got := overlayKeys(t, e, "alice"); !slices.Equal(got, keys) {
			t.Fatalf("a refused drop changed the keys: %v, want %v", got, keys)
		}
		if err := h.Release(ctx); err != nil {
			t.Fatal(err)
		}
	}
	// An unlinked file still open counts too.
	h := openW(t, fsys, root+"/new")
	if err := dirOf(t, fsys, root).Unlink(ctx, "new"); err != nil {
		t.Fatal(err)
	}
	isErr(t, "drop with an unlinked open file", fsys.Drop(ctx, "alice"), fs.ErrBusy)
	writeAt(t, h, []byte("still works"), 0)
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	if err := fsys.Drop(ctx, "alice"); err != nil {
		t.Fatalf("drop once closed: %v", err)
	}
	pristine(t, fsys)
}

// TestDropCutShort: a Drop that deleted only the header (a crash) is
// finished by the next load.
func TestDropCutShort(t *testing.T) {
	disktest.SkipUnderWine(t, wineNoRemoveAll)
	e := newEnv(t)
	fsys := e.mount(t)
	change(t, fsys)
	if err := fsys.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := e.meta.CommitMeta(ctx, blockstore.MetaOp{Key: "ovl/alice/hdr"}); err != nil {
		t.Fatal(err)
	}
	pristine(t, e.mountWith(t, func(*fs.Config) {}))
}

func TestDropInvalidName(t *testing.T) {
	fsys := newEnv(t).mountWith(t, func(*fs.Config) {})
	for _, name := range []string{"", ".", "..", "a/b"} {
		isErr(t, "drop "+name, fsys.Drop(ctx, name), fs.ErrInvalid)
	}
}
