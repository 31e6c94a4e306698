package fs_test

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// fullDisk is a data file on a disk that fills up when full is set: a
// write then stores half its bytes and fails with ENOSPC, as a real one
// can.
type fullDisk struct {
	fs.DataFile
	full *atomic.Bool
}

func (f fullDisk) WriteAt(p []byte, off int64) (int, error) {
	if f.full.Load() {
		n, _ := f.DataFile.WriteAt(p[:len(p)/2], off)
		return n, &os.PathError{Op: "write", Path: "data", Err: syscall.ENOSPC}
	}
	return f.DataFile.WriteAt(p, off)
}

func (f fullDisk) Sync() error {
	if f.full.Load() {
		return &os.PathError{Op: "fdatasync", Path: "data", Err: syscall.ENOSPC}
	}
	return f.DataFile.Sync()
}

func TestNoSpace(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	var full atomic.Bool
	fs.SetDataOpener(fsys, func(path string) (fs.DataFile, error) {
		f, err := fs.OpenOSDataFile(path)
		return fullDisk{f, &full}, err
	})
	base := fstest.VMEntry(2, "disk.vmdk")
	m := newModel(&base)
	p := root + "/disk.vmdk"
	n, h := walk(t, fsys, p), openW(t, fsys, p)
	ok := make([]byte, 100)
	fstest.Fill(ok, 1, 1)
	writeAt(t, h, ok, 10)
	m.write(10, ok)

	full.Store(true)
	for _, w := range []struct {
		name string
		off  int64
		n    int
	}{
		{"copy-up of a base block", 3*bs + 7, 100},
		{"whole block", 5 * bs, bs},
		{"growth", base.Size + bs, 100},
		{"local block", 20, 10}, // last: its half may land; rewritten below
	} {
		d := make([]byte, w.n)
		fstest.Fill(d, 2, uint64(w.off))
		k, err := h.WriteAt(ctx, d, w.off)
		if !errors.Is(err, syscall.ENOSPC) || k != 0 {
			t.Fatalf("%s on a full disk: %d, %v; want 0, ENOSPC", w.name, k, err)
		}
		if w.name == "local block" {
			// A rewrite in place may have landed in part, as on any disk;
			// blocks that were not local must show no trace.
			continue
		}
		m.check(t, w.name+" failed", n, h)
	}
	isErr(t, "sync on a full disk", h.Sync(ctx, false), syscall.ENOSPC)

	full.Store(false)
	d := make([]byte, 100)
	fstest.Fill(d, 3, 3)
	for _, off := range []int64{3*bs + 7, 20} {
		writeAt(t, h, d, off)
		m.write(off, d)
	}
	if err := h.Sync(ctx, false); err != nil {
		t.Fatalf("sync once space is back: %v", err)
	}
	m.check(t, "space back", n, h)
	fsys = e.mount(t)
	n = walk(t, fsys, p)
	m.check(t, "after remount", n, open(t, fsys, p, os.O_RDONLY))
}
