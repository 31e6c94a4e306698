package fs_test

import (
	"context"
	"errors"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// env is a world and the durable state of one workstation: what survives
// a crash.
type env struct {
	world *fstest.World
	meta  blockstore.MetaStore
	state string
}

// standardWorld is built once: no test changes it.
var standardWorld = sync.OnceValues(func() (*fstest.World, error) {
	return fstest.StandardWorld(context.Background())
})

func newEnv(t *testing.T) *env {
	t.Helper()
	w, err := standardWorld()
	if err != nil {
		t.Fatal(err)
	}
	return &env{world: w, meta: memstore.New(), state: disktest.TempDir(t)}
}

// mount starts an FS on e's state; the periodic flush is off so tests
// decide what is durable. The FS is closed when the test ends (one a test
// dropped to simulate a crash too, after the test has checked what it
// left): Windows removes no file that is still open, so the test's
// directory could not go.
func (e *env) mount(t *testing.T) *fs.FS {
	t.Helper()
	fsys, err := fs.New(fs.Config{
		Blocks:        e.world.Blocks,
		Catalog:       e.world.Catalog,
		Meta:          e.meta,
		StateDir:      e.state,
		FlushInterval: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := fsys.Close(ctx); err != nil {
			t.Errorf("close the FS: %v", err)
		}
	})
	return fsys
}

var ctx = context.Background()

// walk returns the node at slash-separated path p.
func walk(t *testing.T, fsys *fs.FS, p string) fs.Node {
	t.Helper()
	n, err := tryWalk(fsys, p)
	if err != nil {
		t.Fatalf("walk %s: %v", p, err)
	}
	return n
}

func tryWalk(fsys *fs.FS, p string) (fs.Node, error) {
	var n fs.Node = fsys.Root()
	for _, name := range strings.Split(p, "/") {
		if name == "" {
			continue
		}
		d, ok := n.(fs.Dir)
		if !ok {
			return nil, fs.ErrNotDir
		}
		var err error
		if n, err = d.Lookup(ctx, name); err != nil {
			return nil, err
		}
	}
	return n, nil
}

func dirOf(t *testing.T, fsys *fs.FS, p string) fs.MutableDir {
	t.Helper()
	d, ok := walk(t, fsys, p).(fs.MutableDir)
	if !ok {
		t.Fatalf("%s is not a mutable directory", p)
	}
	return d
}

func open(t *testing.T, fsys *fs.FS, p string, flags int) fs.Handle {
	t.Helper()
	f, ok := walk(t, fsys, p).(fs.File)
	if !ok {
		t.Fatalf("%s is not a file", p)
	}
	h, err := f.Open(ctx, flags)
	if err != nil {
		t.Fatalf("open %s: %v", p, err)
	}
	t.Cleanup(func() { h.Release(ctx) })
	return h
}

func openW(t *testing.T, fsys *fs.FS, p string) fs.WriteHandle {
	t.Helper()
	h, ok := open(t, fsys, p, os.O_RDWR).(fs.WriteHandle)
	if !ok {
		t.Fatalf("%s: handle is not writable", p)
	}
	return h
}

func size(t *testing.T, fsys *fs.FS, p string) int64 {
	t.Helper()
	a, err := walk(t, fsys, p).Attr(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return a.Size
}

// readAll reads the whole file at p.
func readAll(t *testing.T, fsys *fs.FS, p string) []byte {
	t.Helper()
	h := open(t, fsys, p, os.O_RDONLY)
	var out []byte
	buf := make([]byte, 200<<10)
	for off := int64(0); ; {
		n, err := h.ReadAt(ctx, buf, off)
		if err != nil {
			t.Fatalf("read %s at %d: %v", p, off, err)
		}
		out = append(out, buf[:n]...)
		off += int64(n)
		if n < len(buf) {
			return out
		}
	}
}

func readAt(t *testing.T, h fs.Handle, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	k, err := h.ReadAt(ctx, p, off)
	if err != nil {
		t.Fatalf("read at %d: %v", off, err)
	}
	return p[:k]
}

func writeAt(t *testing.T, h fs.WriteHandle, p []byte, off int64) {
	t.Helper()
	if n, err := h.WriteAt(ctx, p, off); err != nil || n != len(p) {
		t.Fatalf("write %d bytes at %d: %d, %v", len(p), off, n, err)
	}
}

// sameBytes fails t where got is not want, saying where.
var sameBytes = fstest.SameBytes

func isErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: err = %v, want %v", what, err, want)
	}
}

func names(ents []fs.DirEntry) []string {
	var out []string
	for _, e := range ents {
		out = append(out, e.Name)
	}
	return out
}
