//go:build linux

package fstest

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/fs"
)

// The real-mount tables every adapter runs: RunPOSIX (the POSIX table,
// against the local disk) and RunIO (what VMware and QEMU do to files).
// An adapter's test mounts a World with its MountFunc; the tables do the
// rest through the kernel.

// Mounted is a core mounted through an adapter.
type Mounted struct {
	// Dir is the mountpoint.
	Dir string
	// Core is the mounted core, to look under the kernel's caches.
	Core *fs.FS
}

func (m Mounted) path(p string) string { return filepath.Join(m.Dir, p) }

// MountFunc mounts w on fresh state under t.TempDir(); t.Cleanup
// unmounts it and closes the core.
type MountFunc func(t testing.TB, w *World) Mounted

// RequireFuse skips the test where FUSE is missing, unless CI is set:
// there a missing /dev/fuse is a failure.
func RequireFuse(t testing.TB) {
	t.Helper()
	if _, err := os.Stat("/dev/fuse"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and FUSE is missing: %v", err)
		}
		t.Skipf("no FUSE: %v (this never skips in CI)", err)
	}
}

// RunPOSIX runs the table of POSIX behaviours (POSIX) through the kernel
// in a clone, in a template (the checks that only read) and in a
// directory of the local disk, the reference: every outcome must be the
// local disk's, except for the differences Differences lists and, for
// this adapter, those adapterDiffs lists (check name: reason).
func RunPOSIX(t *testing.T, mount MountFunc, adapterDiffs map[string]string) {
	w, err := POSIXWorld(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	m := mount(t, w)
	clone, template := m.path("clones/"+POSIXName), m.path("templates/"+POSIXName)
	local := t.TempDir()
	ref := filepath.Join(local, "tree")
	if err := WriteTree(ref, POSIXEntries()); err != nil {
		t.Fatal(err)
	}
	// The checks that change the clone's files run after those that
	// read them.
	checks := POSIX()
	slices.SortStableFunc(checks, func(a, b Check) int { return cmp.Compare(btoi(a.Changes), btoi(b.Changes)) })
	for i, c := range checks {
		t.Run(c.Name, func(t *testing.T) {
			var want string
			places := map[string]string{}
			switch {
			case c.Changes:
				tree := filepath.Join(local, fmt.Sprintf("tree%d", i))
				if err := WriteTree(tree, POSIXEntries()); err != nil {
					t.Fatal(err)
				}
				want = c.Run(tree)
				places["clone"] = clone
			case c.Writes:
				mk := func(parent string) string {
					d := filepath.Join(parent, fmt.Sprintf("posix%d", i))
					if err := os.Mkdir(d, 0o755); err != nil {
						t.Fatal(err)
					}
					return d
				}
				want = c.Run(mk(local))
				places["clone"] = mk(clone)
			default:
				want = c.Run(ref)
				places["clone"] = clone
				places["template"] = template
			}
			for where, dir := range places {
				got := c.Run(dir)
				t.Logf("in a %s: %q", where, got)
				if got == want {
					continue
				}
				if why, ok := Differences[c.Name]; ok {
					t.Logf("in a %s: %q, on the local disk %q: a deliberate difference (%s)", where, got, want, why)
					continue
				}
				if why, ok := adapterDiffs[c.Name]; ok {
					t.Logf("in a %s: %q, on the local disk %q: a difference of this adapter (%s)", where, got, want, why)
					continue
				}
				t.Errorf("in a %s: %q, on the local disk %q", where, got, want)
			}
		})
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

// RunIO runs the file behaviours VMware and QEMU rely on (reads, writes,
// sparse files, truncation, renames, fsync, O_DIRECT, concurrency)
// against m, a mount of StandardWorld, each on files of its own.
func RunIO(t *testing.T, m Mounted) {
	tpl, cl := m.path("templates/winxp"), m.path("clones/alice")
	vmEntries := VMEntries(2)

	t.Run("template files read back byte-exact", func(t *testing.T) {
		for _, dir := range []struct {
			path string
			v    int
		}{{tpl, 2}, {m.path("templates/winxp@1"), 1}} {
			for _, e := range VMEntries(dir.v) {
				if e.Mode.IsRegular() && e.Size < 1<<30 {
					SameBytes(t, e.Path, ReadFile(t, dir.path+"/"+e.Path), e.Bytes())
				}
			}
		}
		if got := Ls(t, m.path("templates")); !slices.Equal(got, []string{"winxp", "winxp@1", "winxp@2"}) {
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
			"create in templates/": os.Mkdir(m.path("templates/new"), 0o755),
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
		if got, want := Ls(t, cl), Ls(t, tpl); !slices.Equal(got, want) {
			t.Fatalf("clone holds %q, template %q", got, want)
		}
		for _, e := range vmEntries {
			if e.Mode.IsRegular() && e.Size < 1<<30 {
				SameBytes(t, e.Path, ReadFile(t, cl+"/"+e.Path), e.Bytes())
			}
		}
		st, err := os.Stat(cl + "/big.vmdk")
		if err != nil || st.Size() != BigSize {
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
		if got := Ls(t, lck); !slices.Equal(got, []string{"M31338.lck"}) {
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
		SameBytes(t, "hard link", ReadFile(t, cl+"/hard"), VMEntry(2, "winxp.vmx").Bytes())
		if err := os.Link(cl+"/winxp.vmx", tpl+"/hard"); !errors.Is(err, syscall.EROFS) {
			t.Fatalf("hard link from a clone into a template: %v, want EROFS", err)
		}
		SameBytes(t, "renamed base dir", ReadFile(t, cl+"/oldlogs/vmware.log"), VMEntry(2, "logs/vmware.log").Bytes())
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
		SameBytes(t, "renamed over", ReadFile(t, cl+"/winxp.vmx"), []byte("new config"))
		SameBytes(t, "template", ReadFile(t, tpl+"/winxp.vmx"), VMEntry(2, "winxp.vmx").Bytes())
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
		want := VMEntry(2, "disk.vmdk").Bytes()
		f := OpenFile(t, p, os.O_RDWR)
		Pwrite(t, f, []byte("local"), 2*BlockSize+10) // a local block to cut through too
		copy(want[2*BlockSize+10:], "local")
		for _, sz := range []int64{2*BlockSize + 12, 100000} {
			if err := f.Truncate(sz); err != nil {
				t.Fatal(err)
			}
		}
		if err := f.Truncate(3 * BlockSize); err != nil {
			t.Fatal(err)
		}
		got := Pread(t, f, 0, 4*BlockSize)
		if len(got) != 3*BlockSize {
			t.Fatalf("%d bytes after extend, want %d", len(got), 3*BlockSize)
		}
		SameBytes(t, "kept", got[:100000], want[:100000])
		Zeros(t, "extended", got[100000:])
	})

	t.Run("sparse write past EOF", func(t *testing.T) {
		p := cl + "/winxp.vmx"
		f := OpenFile(t, p, os.O_RDWR)
		st, _ := f.Stat()
		old := Pread(t, f, 0, int(st.Size()))
		off := st.Size() + 3*BlockSize + 17
		Pwrite(t, f, []byte("tail"), off)
		got := Pread(t, f, 0, int(off)+100)
		if int64(len(got)) != off+4 {
			t.Fatalf("size %d, want %d", len(got), off+4)
		}
		SameBytes(t, "head", got[:len(old)], old)
		Zeros(t, "gap", got[len(old):off])
		SameBytes(t, "tail", got[off:], []byte("tail"))
	})

	t.Run("fsync", func(t *testing.T) {
		f := OpenFile(t, cl+"/synced", os.O_RDWR|os.O_CREATE)
		Pwrite(t, f, Random(100000, 2), 0)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
		if err := unix.Fdatasync(int(f.Fd())); err != nil {
			t.Fatal(err)
		}
		// What fsync made durable is in the core, past the kernel's cache.
		SameBytes(t, "core after fsync", CoreRead(t, m.Core, "clones/alice/synced"), Random(100000, 2))
		d := OpenFile(t, cl, os.O_RDONLY)
		if err := d.Sync(); err != nil {
			t.Fatalf("fsync of a directory: %v", err)
		}
	})

	t.Run("a file over 4 GiB", func(t *testing.T) {
		f := OpenFile(t, cl+"/huge.vmdk", os.O_RDWR|os.O_CREATE)
		off := int64(5<<30 - 3)
		Pwrite(t, f, []byte("near five"), off)
		if st, _ := f.Stat(); st.Size() != off+9 {
			t.Fatalf("size %d", st.Size())
		}
		SameBytes(t, "near 5 GiB", Pread(t, f, off-5, 100), append(make([]byte, 5), "near five"...))
		Zeros(t, "below", Pread(t, f, 4<<30, 4096))
		g := OpenFile(t, cl+"/big.vmdk", os.O_RDWR)
		Pwrite(t, g, []byte("over"), 4<<30+5)
		want := make([]byte, 100)
		e := VMEntry(2, "big.vmdk")
		e.ReadAt(want, 4<<30)
		copy(want[5:], "over")
		SameBytes(t, "big.vmdk past 4 GiB", Pread(t, g, 4<<30, 100), want)
		if err := f.Sync(); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("O_DIRECT aligned read and write", func(t *testing.T) {
		f := OpenFile(t, cl+"/direct.img", os.O_RDWR|os.O_CREATE|unix.O_DIRECT)
		buf := AlignedBuf(64 << 10)
		copy(buf, Random(len(buf), 3))
		if _, err := f.WriteAt(buf, 4096); err != nil {
			t.Fatal(err)
		}
		back := AlignedBuf(64 << 10)
		if _, err := f.ReadAt(back, 4096); err != nil {
			t.Fatal(err)
		}
		SameBytes(t, "O_DIRECT", back, buf)
		SameBytes(t, "buffered view", Pread(t, OpenFile(t, cl+"/direct.img", os.O_RDONLY), 4096, len(buf)), buf)
		g := OpenFile(t, cl+"/disk.vmdk", os.O_RDONLY|unix.O_DIRECT)
		if _, err := g.ReadAt(back, 0); err != nil {
			t.Fatal(err)
		}
		SameBytes(t, "O_DIRECT read of base", back, VMEntry(2, "disk.vmdk").Bytes()[:len(back)])
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
					if _, err := f.WriteAt(Random(5000, uint64(w*1000+r)), int64(w*rounds+r)*BlockSize+7); err != nil {
						errs <- err
					}
					if _, err := f.WriteAt(Random(piece, uint64(w*1000+r)), int64(r)*4*piece+int64(w)*piece+200*BlockSize); err != nil {
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
					if _, err := f.ReadAt(buf, int64(i%20)*BlockSize*7); err != nil && err != io.EOF {
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
		f := OpenFile(t, p, os.O_RDONLY)
		for w := range writers {
			for r := range rounds {
				SameBytes(t, "own", Pread(t, f, int64(w*rounds+r)*BlockSize+7, 5000), Random(5000, uint64(w*1000+r)))
				SameBytes(t, "shared", Pread(t, f, int64(r)*4*piece+int64(w)*piece+200*BlockSize, piece), Random(piece, uint64(w*1000+r)))
			}
		}
	})

	t.Run("the clone's data is not visible in the template", func(t *testing.T) {
		f := OpenFile(t, cl+"/disk.vmdk", os.O_RDWR)
		Pwrite(t, f, []byte("clone only"), 7*BlockSize+3)
		want := VMEntry(2, "disk.vmdk").Bytes()
		SameBytes(t, "template", ReadFile(t, tpl+"/disk.vmdk"), want)
		SameBytes(t, "template by version", ReadFile(t, m.path("templates/winxp@2/disk.vmdk")), want)
		if got := Pread(t, f, 7*BlockSize+3, 10); string(got) != "clone only" {
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
