package fs_test

import (
	"fmt"
	iofs "io/fs"
	"os"
	"slices"
	"strings"
	"testing"
	"unicode"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// windowsEnv is an env whose world holds fstest.LinuxNames as template "lin"
// and clone "c".
func windowsEnv(t *testing.T) *env {
	t.Helper()
	w := fstest.NewWorld()
	if _, err := w.AddTemplate(ctx, "lin", fstest.LinuxNames()); err != nil {
		t.Fatal(err)
	}
	if _, err := w.AddClone(ctx, "c", fstest.LinuxNames()); err != nil {
		t.Fatal(err)
	}
	return &env{world: w, meta: memstore.New(), state: disktest.TempDir(t)}
}

// windows starts an FS on e's state with Windows names on or off.
func (e *env) windows(t *testing.T, on bool) *fs.FS {
	t.Helper()
	return e.mountWith(t, func(c *fs.Config) { c.MapNames, c.CaseInsensitive = on, on })
}

// TestWindowsNamesShown: with both options on, every entry of a tree
// published on Linux is listed under a name Win32 opens, unique whatever
// the case, and reads back its own content by it.
func TestWindowsNamesShown(t *testing.T) {
	e := windowsEnv(t)
	fsys := e.windows(t, true)
	want := map[string][]byte{}
	for _, en := range fstest.LinuxNames() {
		if en.Mode.IsRegular() {
			want[en.Path] = en.Bytes()
		}
	}
	for _, top := range []string{"templates/lin", "clones/c"} {
		got := 0
		var walkDir func(dir, stored string)
		walkDir = func(dir, stored string) {
			seen := map[string]bool{}
			for _, name := range ls(t, fsys, dir) {
				if seen[fsFold(name)] {
					t.Errorf("%s: %+q listed twice under fold", dir, name)
				}
				seen[fsFold(name)] = true
				p := dir + "/" + name
				if a, _ := walk(t, fsys, p).Attr(ctx); a.Mode.IsDir() {
					walkDir(p, stored+fstest.StoredOf(name)+"/")
					continue
				}
				s := stored + fstest.StoredOf(name)
				sameBytes(t, p, readAll(t, fsys, p), want[s])
				got++
			}
		}
		walkDir(top, "")
		if got != len(want) {
			t.Errorf("%s: read %d files, want %d", top, got, len(want))
		}
	}
	listed := ls(t, fsys, "templates/lin")
	for _, w := range []string{"a\uF03Ab.txt", "CO\uF04E", "nu\uF06C.lck", "dot\uF02E", "space\uF020", "tab\uF009here", "bad\uF0FFname", "DISK.VMDK"} {
		if !slices.Contains(listed, w) {
			t.Errorf("templates/lin lists %+q, without %+q", listed, w)
		}
	}
	// A lookup in any case finds the entry that shows plainly.
	sameBytes(t, "disk.Vmdk", readAll(t, fsys, "templates/lin/disk.Vmdk"), want["DISK.VMDK"])
	sameBytes(t, "SUB/X\uF03FY", readAll(t, fsys, "templates/lin/SUB/X\uF03FY"), want["sub/x?y"])
	// What a case-insensitive host asks to learn the case it opened.
	for p, shown := range map[string]string{
		"/clones/C/disk.vmdk": "/clones/c/DISK.VMDK", "/templates/LIN/Sub/X\uF03FY": "/templates/lin/sub/x\uF03Fy", "/": "/",
	} {
		if got, err := fsys.ShownPath(ctx, p); err != nil || got != shown {
			t.Errorf("ShownPath(%+q) = %+q, %v; want %+q", p, got, err, shown)
		}
	}
}

// fsFold is Windows' compare key: every BMP character upper-cased.
func fsFold(s string) string {
	return strings.Map(func(r rune) rune {
		if r < 0x10000 {
			return unicode.ToUpper(r)
		}
		return r
	}, s)
}

// TestWindowsNamesChange: names made, renamed and removed through the
// Windows view keep the stored bytes they stand for, and case does not
// tell entries apart.
func TestWindowsNamesChange(t *testing.T) {
	e := windowsEnv(t)
	fsys := e.windows(t, true)
	d := walk(t, fsys, "clones/c").(fs.MutableDir)

	n, h, err := d.Create(ctx, "New\uF03A1.txt", 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
	if err != nil {
		t.Fatal(err)
	}
	writeAt(t, h.(fs.WriteHandle), []byte("hello"), 0)
	h.Release(ctx)
	a, _ := n.Attr(ctx)
	// Another case opens the same file; an exclusive create of it fails.
	for _, other := range []string{"new\uF03A1.TXT", "NEW\uF03A1.txt"} {
		got, err := d.Lookup(ctx, other)
		if err != nil {
			t.Fatalf("lookup %+q: %v", other, err)
		}
		if b, _ := got.Attr(ctx); b.Ino != a.Ino {
			t.Errorf("lookup %+q: inode %d, want %d", other, b.Ino, a.Ino)
		}
		_, _, err = d.Create(ctx, other, 0o644, os.O_RDWR|os.O_CREATE|os.O_EXCL)
		isErr(t, "exclusive create of "+other, err, fs.ErrExist)
		_, h, err := d.Create(ctx, other, 0o644, os.O_RDWR|os.O_CREATE)
		if err != nil {
			t.Fatalf("create %+q: %v", other, err)
		}
		sameBytes(t, other, readAt(t, h, 0, 10), []byte("hello"))
		h.Release(ctx)
	}
	_, err = d.Mkdir(ctx, "NEW\uF03A1.TXT", 0o755)
	isErr(t, "mkdir over another case", err, fs.ErrExist)
	// A name no mapping makes is refused rather than stored otherwise.
	_, _, err = d.Create(ctx, "a:b", 0o644, os.O_RDWR|os.O_CREATE)
	isErr(t, "create a:b", err, fs.ErrInvalid)
	// A rename that changes only the case changes it.
	if err := d.Rename(ctx, "new\uF03A1.txt", d, "NEW\uF03A1.TXT", 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Rename(ctx, "co\uF04E", d, "aux\uF02E", 0); err != nil {
		t.Fatal(err)
	}
	if err := d.Unlink(ctx, "SPACE\uF020"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Mkdir(ctx, "Dir\uF03F", 0o755); err != nil {
		t.Fatal(err)
	}
	listed := ls(t, fsys, "clones/c")
	for _, w := range []string{"NEW\uF03A1.TXT", "aux\uF02E", "Dir\uF03F"} {
		if !slices.Contains(listed, w) {
			t.Errorf("clones/c lists %+q, without %+q", listed, w)
		}
	}
	if err := fsys.Close(ctx); err != nil {
		t.Fatal(err)
	}

	// The POSIX view of the same overlay: the stored bytes.
	posix := e.windows(t, false)
	listed = ls(t, posix, "clones/c")
	for _, s := range []string{"NEW:1.TXT", "aux.", "Dir?", "Disk.vmdk", "disk.vmdk", "DISK.VMDK"} {
		if !slices.Contains(listed, s) {
			t.Errorf("POSIX view lists %q, without %q", listed, s)
		}
	}
	for _, s := range []string{"CON", "space "} {
		if slices.Contains(listed, s) {
			t.Errorf("POSIX view still lists %q", s)
		}
	}
	sameBytes(t, "NEW:1.TXT", readAll(t, posix, "clones/c/NEW:1.TXT"), []byte("hello"))
}

// TestWindowsNamesOff: with the options off, names are the stored bytes
// and case tells them apart.
func TestWindowsNamesOff(t *testing.T) {
	e := windowsEnv(t)
	fsys := e.windows(t, false)
	listed := ls(t, fsys, "templates/lin")
	if !slices.Contains(listed, "a:b.txt") || !slices.Contains(listed, "CON") {
		t.Errorf("templates/lin lists %q", listed)
	}
	_, err := tryWalk(fsys, "templates/lin/con")
	isErr(t, "lookup con", err, fs.ErrNotExist)
}

// BenchmarkLookup looks up one entry of a clone directory of n entries:
// the case-sensitive path (a map of stored names) against the Windows
// view (the fold of the name asked for, then a map of folded names).
func BenchmarkLookup(b *testing.B) {
	for _, n := range []int{100, 10000} {
		ents := []fstest.Entry{{Path: "d", Mode: iofs.ModeDir | 0o755}}
		for i := range n {
			ents = append(ents, fstest.Entry{Path: fmt.Sprintf("d/File%06d.vmdk", i), Mode: 0o644})
		}
		w := fstest.NewWorld()
		if _, err := w.AddClone(ctx, "c", ents); err != nil {
			b.Fatal(err)
		}
		for _, mode := range []struct {
			name string
			on   bool
			ask  string
		}{{"posix", false, "File%06d.vmdk"}, {"windows", true, "FILE%06d.VMDK"}} {
			b.Run(fmt.Sprintf("%s/entries=%d", mode.name, n), func(b *testing.B) {
				fsys, err := fs.New(fs.Config{Blocks: w.Blocks, Catalog: w.Catalog, Meta: memstore.New(),
					StateDir: disktest.TempDir(b), FlushInterval: -1, MapNames: mode.on, CaseInsensitive: mode.on})
				if err != nil {
					b.Fatal(err)
				}
				defer fsys.Close(ctx)
				dn, err := fsys.Walk(ctx, "clones/c/d")
				if err != nil {
					b.Fatal(err)
				}
				d := dn.(fs.Dir)
				names := make([]string, 64)
				for i := range names {
					names[i] = fmt.Sprintf(mode.ask, i*n/len(names))
				}
				b.ResetTimer()
				for i := 0; b.Loop(); i++ {
					if _, err := d.Lookup(ctx, names[i%len(names)]); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
