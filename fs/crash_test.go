package fs_test

import (
	"os"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// A crash is simulated by dropping an FS without Close and mounting a new
// one on the same Meta and state directory: the data files' writes stay
// in the page cache, as after a SIGKILL.

func TestCrashKeepsSyncedData(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	base := fstest.VMEntry(2, "disk.vmdk")
	synced := newModel(&base)
	p := root + "/disk.vmdk"
	h := openW(t, fsys, p)
	for i, w := range []struct {
		off int64
		n   int
	}{{100, 10}, {bs - 3, 2 * bs}, {5 * bs, bs}, {base.Size + 10*bs, 5000}} {
		d := make([]byte, w.n)
		fstest.Fill(d, 1, uint64(i))
		writeAt(t, h, d, w.off)
		synced.write(w.off, d)
	}
	if err := h.Sync(ctx, true); err != nil {
		t.Fatal(err)
	}
	// Unsynced: a rewrite of a local block, a copy-up, growth.
	pending := *synced
	pending.events = append([]event(nil), synced.events...)
	for i, w := range []struct {
		off int64
		n   int
	}{{100, 5}, {20 * bs, 10}, {base.Size + 30*bs, 100}} {
		d := make([]byte, w.n)
		fstest.Fill(d, 2, uint64(i))
		writeAt(t, h, d, w.off)
		pending.write(w.off, d)
	}

	fsys = e.mount(t) // the crash
	n := walk(t, fsys, p)
	a, _ := n.Attr(ctx)
	if a.Size != synced.size {
		t.Fatalf("size after crash %d, want the synced %d", a.Size, synced.size)
	}
	h = openW(t, fsys, p)
	got := readAt(t, h, 0, int(synced.size))
	want, maybe := synced.read(0, int(synced.size)), pending.read(0, int(synced.size))
	for i := range got {
		if got[i] != want[i] && got[i] != maybe[i] {
			t.Fatalf("byte %d after crash: %#x, want %#x (synced) or %#x (written later)", i, got[i], want[i], maybe[i])
		}
	}
	// Growing the file again reads zeros where the lost growth was.
	if _, err := n.(fs.Setter).SetAttr(ctx, fs.SetAttr{Size: &pending.size}); err != nil {
		t.Fatal(err)
	}
	tail := readAt(t, h, synced.size, int(pending.size-synced.size))
	for i, b := range tail {
		if b != 0 {
			t.Fatalf("byte %d past the synced size reads %#x after growing, want 0", synced.size+int64(i), b)
		}
	}
}

func TestCrashAfterNamespaceChange(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	_, h, err := dirOf(t, fsys, root).Create(ctx, "new", 0o600, os.O_RDWR)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, h.(fs.WriteHandle), []byte("never synced"), 0)
	if _, err := dirOf(t, fsys, root).Mkdir(ctx, "dir.lck", 0o700); err != nil {
		t.Fatal(err)
	}
	fsys = e.mount(t)
	if got := readAll(t, fsys, root+"/new"); len(got) != 0 {
		t.Fatalf("unsynced new file reads %q after a crash, want empty", got)
	}
	walk(t, fsys, root+"/dir.lck")
}

func TestShrinkIsDurable(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	h := openW(t, fsys, root+"/disk.vmdk")
	writeAt(t, h, make([]byte, 10), 2*bs)
	if err := h.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	var sz int64 = bs + 5
	if _, err := walk(t, fsys, root+"/disk.vmdk").(fs.Setter).SetAttr(ctx, fs.SetAttr{Size: &sz}); err != nil {
		t.Fatal(err)
	}
	fsys = e.mount(t)
	if got := size(t, fsys, root+"/disk.vmdk"); got != sz {
		t.Fatalf("size after crash %d, want %d", got, sz)
	}
}

func TestBaseChanged(t *testing.T) {
	w := fstest.NewWorld()
	entries := []fstest.Entry{{Path: "f", Mode: 0o644, Size: 10, Content: fstest.Pattern(1, 0)}}
	if _, err := w.AddClone(ctx, "c", entries); err != nil {
		t.Fatal(err)
	}
	e := &env{world: w, meta: newEnv(t).meta, state: disktest.TempDir(t)}
	walk(t, e.mount(t), "clones/c/f")
	m, err := w.Build(ctx, 2, "c", 2, entries)
	if err != nil {
		t.Fatal(err)
	}
	w.Catalog.SetClone(m)
	_, err = tryWalk(e.mount(t), "clones/c/f")
	isErr(t, "remount on generation 2", err, fs.ErrBaseChanged)
}
