package gofuse_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

const bs = fstest.BlockSize

func sameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: first difference at byte %d: %#x, want %#x", what, i, got[i], want[i])
		}
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func pread(t *testing.T, f *os.File, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	k, err := f.ReadAt(p, off)
	if err != nil && err != io.EOF {
		t.Fatalf("pread %s at %d: %v", f.Name(), off, err)
	}
	return p[:k]
}

func pwrite(t *testing.T, f *os.File, p []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatalf("pwrite %s at %d: %v", f.Name(), off, err)
	}
}

func openFile(t *testing.T, p string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func ls(t *testing.T, p string) []string {
	t.Helper()
	ents, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

func random(n int, seed uint64) []byte {
	p := make([]byte, n)
	fstest.Fill(p, seed, 0)
	return p
}

func zeros(t *testing.T, what string, p []byte) {
	t.Helper()
	for i, b := range p {
		if b != 0 {
			t.Fatalf("%s: byte %d is %#x, want 0", what, i, b)
		}
	}
}

// TestMount runs the POSIX behaviours VMware and QEMU rely on against
// one real mount, each on files of its own.
func TestMount(t *testing.T) {
	tm := mountStandard(t, gofuse.Options{})
	tpl, cl := tm.path("templates/winxp"), tm.path("clones/alice")
	vmEntries := fstest.VMEntries(2)

	t.Run("template files read back byte-exact", func(t *testing.T) {
		for _, dir := range []struct {
			path string
			v    int
		}{{tpl, 2}, {tm.path("templates/winxp@1"), 1}} {
			for _, e := range fstest.VMEntries(dir.v) {
				if e.Mode.IsRegular() && e.Size < 1<<30 {
					sameBytes(t, e.Path, readFile(t, dir.path+"/"+e.Path), e.Bytes())
				}
			}
		}
		if got := ls(t, tm.path("templates")); !slices.Equal(got, []string{"winxp", "winxp@1", "winxp@2"}) {
			t.Fatalf("templates/ holds %q", got)
		}
		if l, err := os.Readlink(tpl + "/current.vmdk"); err != nil || l != "disk.vmdk" {
			t.Fatalf("readlink %q, %v", l, err)
		}
	})

	t.Run("template files are read-only", func(t *testing.T) {
		for what, err := range map[string]error{
			"open for writing":     func() error { _, err := os.OpenFile(tpl+"/disk.vmdk", os.O_WRONLY, 0); return err }(),
			"create":               os.WriteFile(tpl+"/new", []byte("x"), 0o644),
			"mkdir":                os.Mkdir(tpl+"/dir", 0o755),
			"unlink":               os.Remove(tpl + "/winxp.vmx"),
			"rmdir":                os.Remove(tpl + "/logs"),
			"rename":               os.Rename(tpl+"/winxp.vmx", tpl+"/x.vmx"),
			"chmod":                os.Chmod(tpl+"/winxp.vmx", 0o600),
			"truncate":             os.Truncate(tpl+"/winxp.vmx", 0),
			"symlink":              os.Symlink("x", tpl+"/link"),
			"create in templates/": os.Mkdir(tm.path("templates/new"), 0o755),
		} {
			if !errors.Is(err, syscall.EROFS) {
				t.Errorf("%s in a template: %v, want EROFS", what, err)
			}
		}
		st, err := os.Stat(tpl + "/disk.vmdk")
		if err != nil || st.Mode() != 0o444 {
			t.Fatalf("template file mode %v, %v", st.Mode(), err)
		}
	})

	t.Run("a clone reads like a full copy of its template", func(t *testing.T) {
		if got, want := ls(t, cl), ls(t, tpl); !slices.Equal(got, want) {
			t.Fatalf("clone holds %q, template %q", got, want)
		}
		for _, e := range vmEntries {
			if e.Mode.IsRegular() && e.Size < 1<<30 {
				sameBytes(t, e.Path, readFile(t, cl+"/"+e.Path), e.Bytes())
			}
		}
		st, err := os.Stat(cl + "/big.vmdk")
		if err != nil || st.Size() != fstest.BigSize {
			t.Fatalf("big.vmdk: %v, %v", st, err)
		}
	})

	t.Run("create, rename, unlink, mkdir, rmdir, lock directories", func(t *testing.T) {
		lck := cl + "/disk.vmdk.lck"
		if err := os.Mkdir(lck, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(lck+"/M31337.lck", []byte("lock"), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(lck); !errors.Is(err, syscall.ENOTEMPTY) {
			t.Fatalf("rmdir of a full lock dir: %v", err)
		}
		if err := os.Rename(lck+"/M31337.lck", lck+"/M31338.lck"); err != nil {
			t.Fatal(err)
		}
		if got := ls(t, lck); !slices.Equal(got, []string{"M31338.lck"}) {
			t.Fatalf("lock dir holds %q", got)
		}
		if err := os.Remove(lck + "/M31338.lck"); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(lck); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(lck); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("lock dir after rmdir: %v", err)
		}
		// Base entries go too, and the template keeps them.
		if err := os.Remove(cl + "/empty"); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cl+"/logs", cl+"/oldlogs"); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink("winxp.vmx", cl+"/link"); err != nil {
			t.Fatal(err)
		}
		if l, err := os.Readlink(cl + "/link"); err != nil || l != "winxp.vmx" {
			t.Fatalf("readlink %q, %v", l, err)
		}
		if err := os.Link(cl+"/winxp.vmx", cl+"/hard"); err != nil {
			t.Fatalf("hard link: %v", err)
		}
		sameBytes(t, "hard link", readFile(t, cl+"/hard"), fstest.VMEntry(2, "winxp.vmx").Bytes())
		if err := os.Link(cl+"/winxp.vmx", tpl+"/hard"); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("hard link from a clone into a template: %v, want EROFS", err)
		}
		sameBytes(t, "renamed base dir", readFile(t, cl+"/oldlogs/vmware.log"), fstest.VMEntry(2, "logs/vmware.log").Bytes())
		if _, err := os.Stat(tpl + "/empty"); err != nil {
			t.Fatalf("template lost empty: %v", err)
		}
	})

	t.Run("rename over an existing file", func(t *testing.T) {
		if err := os.WriteFile(cl+"/winxp.vmx.tmp", []byte("new config"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(cl+"/winxp.vmx.tmp", cl+"/winxp.vmx"); err != nil {
			t.Fatal(err)
		}
		sameBytes(t, "renamed over", readFile(t, cl+"/winxp.vmx"), []byte("new config"))
		sameBytes(t, "template", readFile(t, tpl+"/winxp.vmx"), fstest.VMEntry(2, "winxp.vmx").Bytes())
	})

	t.Run("chmod and utimens", func(t *testing.T) {
		p := cl + "/winxp.nvram"
		if err := os.Chmod(p, 0o600); err != nil {
			t.Fatal(err)
		}
		when := time.Date(2020, 1, 2, 3, 4, 5, 6, time.UTC)
		if err := os.Chtimes(p, when, when); err != nil {
			t.Fatal(err)
		}
		st, err := os.Stat(p)
		if err != nil || st.Mode() != 0o600 || !st.ModTime().Equal(when) {
			t.Fatalf("stat after chmod/utimens: %v %v, %v", st.Mode(), st.ModTime(), err)
		}
	})

	t.Run("truncate shrink then extend reads zeros", func(t *testing.T) {
		p := cl + "/disk.vmdk"
		want := fstest.VMEntry(2, "disk.vmdk").Bytes()
		f := openFile(t, p, os.O_RDWR)
		pwrite(t, f, []byte("local"), 2*bs+10) // a local block to cut through too
		copy(want[2*bs+10:], "local")
		for _, sz := range []int64{2*bs + 12, 100000} {
			if err := f.Truncate(sz); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Truncate(3 * bs); err != nil {
			t.Fatal(err)
		}
		got := pread(t, f, 0, 4*bs)
		if len(got) != 3*bs {
			t.Fatalf("%d bytes after extend, want %d", len(got), 3*bs)
		}
		sameBytes(t, "kept", got[:100000], want[:100000])
		zeros(t, "extended", got[100000:])
	})

	t.Run("sparse write past EOF", func(t *testing.T) {
		p := cl + "/winxp.vmx"
		f := openFile(t, p, os.O_RDWR)
		st, _ := f.Stat()
		old := pread(t, f, 0, int(st.Size()))
		off := st.Size() + 3*bs + 17
		pwrite(t, f, []byte("tail"), off)
		got := pread(t, f, 0, int(off)+100)
		if int64(len(got)) != off+4 {
			t.Fatalf("size %d, want %d", len(got), off+4)
		}
		sameBytes(t, "head", got[:len(old)], old)
		zeros(t, "gap", got[len(old):off])
		sameBytes(t, "tail", got[off:], []byte("tail"))
	})

	t.Run("fallocate", func(t *testing.T) {
		p := cl + "/logs-falloc"
		f := openFile(t, p, os.O_RDWR|os.O_CREATE)
		pwrite(t, f, random(3*bs, 1), 0)
		if err := unix.Fallocate(int(f.Fd()), 0, 0, 5*bs+1); err != nil {
			t.Fatal(err)
		}
		if st, _ := f.Stat(); st.Size() != 5*bs+1 {
			t.Fatalf("size after fallocate %d", st.Size())
		}
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_KEEP_SIZE, 0, 10*bs); err != nil {
			t.Fatal(err)
		}
		if st, _ := f.Stat(); st.Size() != 5*bs+1 {
			t.Fatalf("size after fallocate KEEP_SIZE %d", st.Size())
		}
		if err := unix.Fallocate(int(f.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 100, 2*bs); err != nil {
			t.Fatal(err)
		}
		got := pread(t, f, 0, 6*bs)
		want := append(random(3*bs, 1), make([]byte, 2*bs+1)...)
		clear(want[100 : 100+2*bs])
		sameBytes(t, "after punch", got, want)
		// And a punch through base blocks: the base must not show.
		g := openFile(t, cl+"/winxp.nvram", os.O_RDWR)
		if err := unix.Fallocate(int(g.Fd()), unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, 0, 8192); err != nil {
			t.Fatal(err)
		}
		zeros(t, "punched base", pread(t, g, 0, 8192))
	})

	t.Run("fsync", func(t *testing.T) {
		f := openFile(t, cl+"/synced", os.O_RDWR|os.O_CREATE)
		pwrite(t, f, random(100000, 2), 0)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
		// What fsync made durable is in the core, past the kernel's cache.
		sameBytes(t, "core after fsync", coreRead(t, tm.core, "clones/alice/synced"), random(100000, 2))
		d := openFile(t, cl, os.O_RDONLY)
		if err := d.Sync(); err != nil {
			t.Fatalf("fsync of a directory: %v", err)
		}
	})

	t.Run("a file over 4 GiB", func(t *testing.T) {
		f := openFile(t, cl+"/huge.vmdk", os.O_RDWR|os.O_CREATE)
		off := int64(5<<30 - 3)
		pwrite(t, f, []byte("near five"), off)
		if st, _ := f.Stat(); st.Size() != off+9 {
			t.Fatalf("size %d", st.Size())
		}
		sameBytes(t, "near 5 GiB", pread(t, f, off-5, 100), append(make([]byte, 5), "near five"...))
		zeros(t, "below", pread(t, f, 4<<30, 4096))
		g := openFile(t, cl+"/big.vmdk", os.O_RDWR)
		pwrite(t, g, []byte("over"), 4<<30+5)
		want := make([]byte, 100)
		e := fstest.VMEntry(2, "big.vmdk")
		e.ReadAt(want, 4<<30)
		copy(want[5:], "over")
		sameBytes(t, "big.vmdk past 4 GiB", pread(t, g, 4<<30, 100), want)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("O_DIRECT aligned read and write", func(t *testing.T) {
		f := openFile(t, cl+"/direct.img", os.O_RDWR|os.O_CREATE|unix.O_DIRECT)
		buf := alignedBuf(64 << 10)
		copy(buf, random(len(buf), 3))
		if _, err := f.WriteAt(buf, 4096); err != nil {
			t.Fatal(err)
		}
		back := alignedBuf(64 << 10)
		if _, err := f.ReadAt(back, 4096); err != nil {
			t.Fatal(err)
		}
		sameBytes(t, "O_DIRECT", back, buf)
		sameBytes(t, "buffered view", pread(t, openFile(t, cl+"/direct.img", os.O_RDONLY), 4096, len(buf)), buf)
		g := openFile(t, cl+"/disk.vmdk", os.O_RDONLY|unix.O_DIRECT)
		if _, err := g.ReadAt(back, 0); err != nil {
			t.Fatal(err)
		}
		sameBytes(t, "O_DIRECT read of base", back, fstest.VMEntry(2, "disk.vmdk").Bytes()[:len(back)])
	})

	t.Run("shared writable mmap in another process", func(t *testing.T) {
		p := cl + "/winxp.vmem"
		if err := os.WriteFile(p, make([]byte, 3*bs+100), 0o600); err != nil {
			t.Fatal(err)
		}
		c := helper(t, "mmap", p)
		expectLine(t, c.lines, "done")
		if err := c.wait(); err != nil {
			t.Fatalf("mmap helper: %v", err)
		}
		want := mmapPattern(3*bs + 100)
		sameBytes(t, "read back", readFile(t, p), want)
		f := openFile(t, p, os.O_RDWR)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		sameBytes(t, "core", coreRead(t, tm.core, "clones/alice/winxp.vmem"), want)
	})

	t.Run("concurrent readers and writers", func(t *testing.T) {
		p := cl + "/concurrent.img"
		if err := os.WriteFile(p, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		const writers, rounds, piece = 4, 32, 1024
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for w := range writers {
			wg.Go(func() {
				f, err := os.OpenFile(p, os.O_RDWR, 0)
				if err != nil {
					errs <- err
					return
				}
				defer f.Close()
				for r := range rounds {
					// Own blocks, and a share of blocks every writer uses.
					if _, err := f.WriteAt(random(5000, uint64(w*1000+r)), int64(w*rounds+r)*bs+7); err != nil {
						errs <- err
					}
					if _, err := f.WriteAt(random(piece, uint64(w*1000+r)), int64(r)*4*piece+int64(w)*piece+200*bs); err != nil {
						errs <- err
					}
				}
			})
		}
		for range 3 {
			wg.Go(func() {
				f, err := os.Open(p)
				if err != nil {
					errs <- err
					return
				}
				defer f.Close()
				buf := make([]byte, 256<<10)
				for i := range 50 {
					if _, err := f.ReadAt(buf, int64(i%20)*bs*7); err != nil && err != io.EOF {
						errs <- err
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		f := openFile(t, p, os.O_RDONLY)
		for w := range writers {
			for r := range rounds {
				sameBytes(t, "own", pread(t, f, int64(w*rounds+r)*bs+7, 5000), random(5000, uint64(w*1000+r)))
				sameBytes(t, "shared", pread(t, f, int64(r)*4*piece+int64(w)*piece+200*bs, piece), random(piece, uint64(w*1000+r)))
			}
		}
	})

	t.Run("flock between two processes", func(t *testing.T) {
		p := cl + "/winxp.vmx"
		c := helper(t, "flock", p)
		expectLine(t, c.lines, "locked")
		f := openFile(t, p, os.O_RDWR)
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); !errors.Is(err, unix.EWOULDBLOCK) {
			t.Fatalf("flock while another process holds it: %v, want EWOULDBLOCK", err)
		}
		c.wait()
		if err := unix.Flock(int(f.Fd()), unix.LOCK_EX|unix.LOCK_NB); err != nil {
			t.Fatalf("flock once released: %v", err)
		}
	})

	t.Run("fcntl locks between two processes", func(t *testing.T) {
		p := cl + "/winxp.nvram"
		c := helper(t, "fcntl", p)
		expectLine(t, c.lines, "locked")
		f := openFile(t, p, os.O_RDWR)
		lk := unix.Flock_t{Type: unix.F_WRLCK, Start: 50, Len: 10}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); !errors.Is(err, unix.EAGAIN) && !errors.Is(err, unix.EACCES) {
			t.Fatalf("fcntl lock while another process holds it: %v, want EAGAIN", err)
		}
		lk = unix.Flock_t{Type: unix.F_WRLCK, Start: 200, Len: 10}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
			t.Fatalf("fcntl lock of another range: %v", err)
		}
		c.wait()
		lk = unix.Flock_t{Type: unix.F_WRLCK, Start: 50, Len: 10}
		if err := unix.FcntlFlock(f.Fd(), unix.F_SETLK, &lk); err != nil {
			t.Fatalf("fcntl lock once released: %v", err)
		}
	})

	t.Run("the clone's data is not visible in the template", func(t *testing.T) {
		f := openFile(t, cl+"/disk.vmdk", os.O_RDWR)
		pwrite(t, f, []byte("clone only"), 7*bs+3)
		want := fstest.VMEntry(2, "disk.vmdk").Bytes()
		sameBytes(t, "template", readFile(t, tpl+"/disk.vmdk"), want)
		sameBytes(t, "template by version", readFile(t, tm.path("templates/winxp@2/disk.vmdk")), want)
		if got := pread(t, f, 7*bs+3, 10); string(got) != "clone only" {
			t.Fatalf("clone reads %q", got)
		}
	})

	t.Run("statfs", func(t *testing.T) {
		var st unix.Statfs_t
		if err := unix.Statfs(cl, &st); err != nil {
			t.Fatal(err)
		}
		if st.Blocks == 0 || st.Bsize == 0 || st.Namelen != fs.MaxNameLen {
			t.Fatalf("statfs %+v", st)
		}
	})
}

// coreRead reads a file through the core, under the kernel's caches.
func coreRead(t *testing.T, core *fs.FS, p string) []byte {
	t.Helper()
	var n fs.Node = core.Root()
	for _, name := range splitPath(p) {
		c, err := n.(fs.Dir).Lookup(context.Background(), name)
		if err != nil {
			t.Fatalf("core lookup %s: %v", p, err)
		}
		n = c
	}
	h, err := n.(fs.File).Open(context.Background(), os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	a, _ := n.Attr(context.Background())
	buf := make([]byte, a.Size)
	k, err := h.ReadAt(context.Background(), buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:k]
}

func splitPath(p string) []string {
	var out []string
	for _, s := range bytes.Split([]byte(p), []byte("/")) {
		if len(s) > 0 {
			out = append(out, string(s))
		}
	}
	return out
}

// alignedBuf returns n bytes aligned for O_DIRECT.
func alignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&b[0]))&4095)
	return b[off : off+n]
}
