package fs_test

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// mountWith starts an FS on e's state, as mount, with edit applied to
// its Config.
func (e *env) mountWith(t *testing.T, edit func(*fs.Config)) *fs.FS {
	t.Helper()
	cfg := fs.Config{
		Blocks:        e.world.Blocks,
		Catalog:       e.world.Catalog,
		Meta:          e.meta,
		StateDir:      e.state,
		FlushInterval: -1,
	}
	edit(&cfg)
	fsys, err := fs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { fsys.Close(ctx) })
	return fsys
}

// sealed runs Seal on alice and returns the entries it was shown.
func sealed(t *testing.T, fsys *fs.FS) map[string]fs.SealedEntry {
	t.Helper()
	out := make(map[string]fs.SealedEntry)
	err := fsys.Seal(ctx, "alice", func(ents []fs.SealedEntry, _ *fs.SealReader) error {
		for _, e := range ents {
			out[e.Path] = e
		}
		return nil
	})
	if err != nil {
		t.Fatalf("seal: %v", err)
	}
	return out
}

func TestSealDirty(t *testing.T) {
	ds := fstest.VMEntry(2, "disk.vmdk").Size // 48 whole blocks and 4321 bytes
	last := ds / bs
	punch := fs.AllocPunchHole | fs.AllocKeepSize
	type step struct {
		ops  []op
		want []int64 // Dirty of disk.vmdk at the Seal after ops
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"nothing written", []step{{nil, nil}}},
		{"partial write copies up one block", []step{{[]op{write(bs+5, 10, 1)}, []int64{1}}}},
		{"write across blocks", []step{{[]op{write(2*bs-3, 10, 2)}, []int64{1, 2}}}},
		{"writes gather until the seal", []step{{[]op{write(7*bs, bs, 3), write(0, 1, 4), write(3*bs, 1, 5)}, []int64{0, 3, 7}}}},
		{"a seal clears, a rewrite marks again", []step{
			{[]op{write(0, 2*bs, 6)}, []int64{0, 1}},
			{nil, nil},
			{[]op{write(bs+1, 1, 7)}, []int64{1}},
		}},
		{"shrink drops marks and marks the cut block", []step{
			{[]op{write(0, 3*bs, 8)}, []int64{0, 1, 2}},
			{[]op{truncate(bs + 100)}, []int64{1}},
		}},
		{"shrink to a boundary marks nothing", []step{
			{[]op{write(0, 3*bs, 9)}, []int64{0, 1, 2}},
			{[]op{truncate(2 * bs)}, nil},
		}},
		{"grow past a partial local block marks it", []step{
			{[]op{write(ds-10, 5, 10)}, []int64{last}},
			{[]op{truncate(ds + 3*bs)}, []int64{last}},
		}},
		{"write far past a partial local block marks it", []step{
			{[]op{write(ds-10, 5, 11)}, []int64{last}},
			{[]op{write(ds+5*bs, 10, 12)}, []int64{last, last + 5}},
		}},
		{"fallocate grows past a partial local block", []step{
			{[]op{write(ds-10, 5, 13)}, []int64{last}},
			{[]op{allocate(0, ds+bs, 0)}, []int64{last}},
		}},
		{"growing past a base block marks nothing", []step{{[]op{truncate(ds + bs)}, nil}}},
		{"punch marks whole blocks, zeroes the edges", []step{
			{[]op{write(2*bs, bs, 14)}, []int64{2}},
			{[]op{allocate(bs/2, 3*bs, punch)}, []int64{0, 1, 2, 3}},
		}},
		{"punch past the base marks only local blocks", []step{
			{[]op{truncate(ds + 10*bs), write((last+2)*bs, bs, 15)}, []int64{last + 2}},
			{[]op{allocate((last+1)*bs, 3*bs, punch)}, []int64{last + 2}},
		}},
		{"zero range in one block", []step{{[]op{allocate(10, 100, fs.AllocZeroRange)}, []int64{0}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fsys := newEnv(t).mountWith(t, func(*fs.Config) {})
			p := root + "/disk.vmdk"
			base := fstest.VMEntry(2, "disk.vmdk")
			m := newModel(&base)
			n := walk(t, fsys, p).(fs.Setter)
			h := openW(t, fsys, p)
			for i, s := range tc.steps {
				for _, o := range s.ops {
					o.do(t, n, h, m)
				}
				var got fs.SealedEntry
				err := fsys.Seal(ctx, "alice", func(ents []fs.SealedEntry, sr *fs.SealReader) error {
					read := sr.ReadBlock
					for _, e := range ents {
						if e.Path == "disk.vmdk" {
							got = e
						}
					}
					// Every dirty block reads as the file does.
					buf := make([]byte, 0, bs)
					for _, b := range got.Dirty {
						data, err := read(got.Ino, b, buf)
						if err != nil {
							return err
						}
						sameBytes(t, fmt.Sprintf("step %d block %d", i, b), data, m.read(b*bs, bs))
					}
					return nil
				})
				if err != nil {
					t.Fatalf("step %d: seal: %v", i, err)
				}
				if !slices.Equal(got.Dirty, s.want) {
					t.Fatalf("step %d: dirty %v, want %v", i, got.Dirty, s.want)
				}
				if got.Size != m.size {
					t.Fatalf("step %d: size %d, want %d", i, got.Size, m.size)
				}
			}
		})
	}
}

func TestSealMarksStayOnFailure(t *testing.T) {
	fsys := newEnv(t).mountWith(t, func(*fs.Config) {})
	h := openW(t, fsys, root+"/disk.vmdk")
	writeAt(t, h, []byte("x"), 5*bs)
	create(t, fsys, root, "new", []byte("abc"))
	boom := errors.New("upload refused")
	for i := range 2 {
		err := fsys.Seal(ctx, "alice", func([]fs.SealedEntry, *fs.SealReader) error { return boom })
		if !errors.Is(err, boom) {
			t.Fatalf("seal %d: %v, want %v", i, err, boom)
		}
	}
	got := sealed(t, fsys)
	if d := got["disk.vmdk"].Dirty; !slices.Equal(d, []int64{5}) {
		t.Fatalf("disk.vmdk dirty %v after failed seals", d)
	}
	if d := got["new"].Dirty; !slices.Equal(d, []int64{0}) {
		t.Fatalf("new dirty %v after failed seals", d)
	}
	for p, e := range sealed(t, fsys) {
		if len(e.Dirty) != 0 {
			t.Fatalf("%s dirty %v after a successful seal", p, e.Dirty)
		}
	}
}

func TestSealReloadMarksAllLocal(t *testing.T) {
	for _, crash := range []bool{false, true} {
		t.Run(fmt.Sprintf("crash=%v", crash), func(t *testing.T) {
			e := newEnv(t)
			fsys := e.mount(t)
			h := openW(t, fsys, root+"/disk.vmdk")
			writeAt(t, h, make([]byte, 2*bs), 3*bs)
			writeAt(t, h, []byte("y"), 10*bs+7)
			if err := h.Sync(ctx, false); err != nil {
				t.Fatal(err)
			}
			if d := sealed(t, fsys)["disk.vmdk"].Dirty; !slices.Equal(d, []int64{3, 4, 10}) {
				t.Fatalf("dirty %v", d)
			}
			if len(sealed(t, fsys)["disk.vmdk"].Dirty) != 0 {
				t.Fatal("marks not cleared")
			}
			if !crash {
				h.Release(ctx)
				if err := fsys.Close(ctx); err != nil {
					t.Fatal(err)
				}
			} // else: the FS is abandoned, as by SIGKILL after the fsync
			fsys = e.mountWith(t, func(*fs.Config) {})
			if d := sealed(t, fsys)["disk.vmdk"].Dirty; !slices.Equal(d, []int64{3, 4, 10}) {
				t.Fatalf("dirty after reload %v, want every local block", d)
			}
		})
	}
}

// TestSealHoldsChangesOff writes in a loop while fn sleeps: no write
// completes during fn, and writes go on after it.
func TestSealHoldsChangesOff(t *testing.T) {
	fsys := newEnv(t).mountWith(t, func(*fs.Config) {})
	h := openW(t, fsys, root+"/disk.vmdk")
	rh := open(t, fsys, root+"/winxp.vmx", os.O_RDONLY)
	var writes atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Go(func() {
		p := make([]byte, 100)
		for i := int64(0); ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := h.WriteAt(ctx, p, (i%64)*bs+i%1000); err != nil {
				t.Errorf("write: %v", err)
				return
			}
			writes.Add(1)
		}
	})
	defer wg.Wait()
	defer close(stop)
	for writes.Load() < 10 {
		time.Sleep(time.Millisecond)
	}
	// Changes counts what the FS did, not what the writer saw returned:
	// a write that finished just before Seal may still be counted late
	// by the writer, never by Changes.
	changes := func(ents []fs.OverlayEntry) uint64 {
		for _, e := range ents {
			if e.Path == "disk.vmdk" {
				return e.Changes
			}
		}
		t.Fatal("no disk.vmdk")
		return 0
	}
	err := fsys.Seal(ctx, "alice", func(ents []fs.SealedEntry, _ *fs.SealReader) error {
		var first []fs.OverlayEntry
		for _, e := range ents {
			first = append(first, e.OverlayEntry)
		}
		time.Sleep(50 * time.Millisecond)
		if _, err := rh.ReadAt(ctx, make([]byte, 10), 0); err != nil {
			return fmt.Errorf("read during fn: %v", err)
		}
		now, err := fsys.Overlay(ctx, "alice")
		if err != nil {
			return err
		}
		if a, b := changes(first), changes(now); a != b {
			return fmt.Errorf("%d changes to disk.vmdk during fn", b-a)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	after := writes.Load()
	for writes.Load() < after+10 {
		time.Sleep(time.Millisecond)
	}
}

// TestSealWaitsForNamespaceChanges: a mkdir that starts during fn is not
// in fn's entries and finishes after it.
func TestSealWaitsForNamespaceChanges(t *testing.T) {
	fsys := newEnv(t).mountWith(t, func(*fs.Config) {})
	d := dirOf(t, fsys, root)
	var done atomic.Bool
	err := fsys.Seal(ctx, "alice", func(ents []fs.SealedEntry, _ *fs.SealReader) error {
		go func() {
			if _, err := d.Mkdir(ctx, "later", 0o755); err != nil {
				t.Errorf("mkdir: %v", err)
			}
			done.Store(true)
		}()
		time.Sleep(50 * time.Millisecond)
		if done.Load() {
			return errors.New("mkdir finished during fn")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for !done.Load() {
		time.Sleep(time.Millisecond)
	}
	if _, ok := sealed(t, fsys)["later"]; !ok {
		t.Fatal("mkdir lost")
	}
}

func TestSealRead(t *testing.T) {
	fsys := newEnv(t).mountWith(t, func(*fs.Config) {})
	ds := fstest.VMEntry(2, "disk.vmdk").Size
	h := openW(t, fsys, root+"/disk.vmdk")
	writeAt(t, h, []byte("tail"), ds-4)
	var late func(uint64, int64, []byte) ([]byte, error)
	var ino, link uint64
	err := fsys.Seal(ctx, "alice", func(ents []fs.SealedEntry, sr *fs.SealReader) error {
		read := sr.ReadBlock
		late = read
		for _, e := range ents {
			switch e.Path {
			case "disk.vmdk":
				ino = e.Ino
			case "current.vmdk":
				link = e.Ino
			}
		}
		b, err := read(ino, ds/bs, nil) // dst too small: a new slice
		if err != nil || int64(len(b)) != ds%bs || string(b[len(b)-4:]) != "tail" {
			return fmt.Errorf("short last block: %d bytes, %v", len(b), err)
		}
		for _, bad := range []struct {
			ino   uint64
			block int64
			want  error
		}{
			{ino, 0, fs.ErrInvalid},         // not local
			{ino, ds/bs + 1, fs.ErrInvalid}, // past the size
			{12345, 0, fs.ErrNotExist},      // no such inode
			{link, 0, fs.ErrNotExist},       // a symlink
		} {
			if _, err := read(bad.ino, bad.block, nil); !errors.Is(err, bad.want) {
				return fmt.Errorf("read(%d, %d): %v, want %v", bad.ino, bad.block, err, bad.want)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := late(ino, ds/bs, nil); !errors.Is(err, fs.ErrInvalid) {
		t.Fatalf("read after fn: %v", err)
	}
	if n, err := fsys.BlockSize(ctx, "alice"); err != nil || n != bs {
		t.Fatalf("BlockSize: %d, %v", n, err)
	}
}

// TestSealConcurrent seals again and again while writes, truncates,
// punches, namespace changes and flushes run (run it with -race): no
// deadlock, and the blocks each Seal calls dirty, kept from seal to seal,
// always add up to the local blocks as a last full read finds them.
func TestSealConcurrent(t *testing.T) {
	fsys := newEnv(t).mountWith(t, func(*fs.Config) {})
	d := dirOf(t, fsys, root)
	create(t, fsys, root, "t", nil)
	disk := openW(t, fsys, root+"/disk.vmdk")
	tf := openW(t, fsys, root+"/t")
	tn := walk(t, fsys, root+"/t").(fs.Setter)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	loop := func(f func(i int) error) {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := f(i); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	loop(func(i int) error {
		p := make([]byte, 1+i*37%5000)
		fstest.Fill(p, uint64(i), 0)
		_, err := disk.WriteAt(ctx, p, int64(i*7919%(60*bs)))
		return err
	})
	loop(func(i int) error {
		switch i % 4 {
		case 0:
			p := make([]byte, 3000)
			fstest.Fill(p, uint64(i), 1)
			_, err := tf.WriteAt(ctx, p, int64(i*4099%(8*bs)))
			return err
		case 1:
			size := int64(i * 5003 % (9 * bs))
			_, err := tn.SetAttr(ctx, fs.SetAttr{Size: &size})
			return err
		case 2:
			return tf.Allocate(ctx, int64(i%(4*bs)), 2*bs, fs.AllocPunchHole|fs.AllocKeepSize)
		default:
			return tf.Allocate(ctx, int64(i%(4*bs)), bs+10, fs.AllocZeroRange)
		}
	})
	loop(func(i int) error {
		name := fmt.Sprintf("f%d", i%5)
		_, h, err := d.Create(ctx, name, 0o644, os.O_RDWR)
		if err != nil {
			return err
		}
		h.(fs.WriteHandle).WriteAt(ctx, []byte("x"), int64(i%3)*bs)
		h.Release(ctx)
		if i%2 == 0 {
			return d.Rename(ctx, name, d, fmt.Sprintf("g%d", i%3), 0)
		}
		return d.Unlink(ctx, name)
	})
	loop(func(int) error { time.Sleep(time.Millisecond); return fsys.Flush(ctx) })

	// shadow[ino][block] is the block's content as of the seal that last
	// called it dirty.
	shadow := make(map[uint64]map[int64]string)
	seal := func(full bool) {
		t.Helper()
		err := fsys.Seal(ctx, "alice", func(ents []fs.SealedEntry, sr *fs.SealReader) error {
			read := sr.ReadBlock
			for _, e := range ents {
				if !e.Mode.IsRegular() {
					continue
				}
				sh := shadow[e.Ino]
				if sh == nil {
					sh = make(map[int64]string)
					shadow[e.Ino] = sh
				}
				for _, b := range e.Dirty {
					p, err := read(e.Ino, b, nil)
					if err != nil {
						return err
					}
					if want := min(bs, e.Size-b*bs); int64(len(p)) != want {
						return fmt.Errorf("%s block %d: %d bytes, want %d", e.Path, b, len(p), want)
					}
					sh[b] = string(p)
				}
				if !full {
					continue
				}
				for b := int64(0); b*bs < e.Size && b/64 < int64(len(e.Local)); b++ {
					if e.Local[b/64]&(1<<(b%64)) == 0 {
						continue
					}
					p, err := read(e.Ino, b, nil)
					if err != nil {
						return err
					}
					if sh[b] != string(p) {
						return fmt.Errorf("%s block %d changed but was never called dirty", e.Path, b)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(500 * time.Millisecond)
	for i := 0; time.Now().Before(deadline); i++ {
		seal(false)
		if i == 3 {
			isErr(t, "drop with open files", fsys.Drop(ctx, "alice"), fs.ErrBusy)
		}
	}
	close(stop)
	wg.Wait()
	seal(true)
}
