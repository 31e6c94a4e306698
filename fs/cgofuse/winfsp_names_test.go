package cgofuse

import (
	"context"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// winfspToPosix is what WinFsp's FUSE layer makes of a Windows path
// before the file system sees it (FspPosixMapWindowsToPosixPathEx with
// Translate, src/shared/ku/posix.c): '\' becomes '/', and U+F000+c
// becomes c for each c of FspPosixInvalidPathChars.
func winfspToPosix(w string) string {
	var b strings.Builder
	for _, r := range w {
		switch {
		case r == '\\':
			b.WriteByte('/')
		case r >= 0xF000 && r < 0xF080 && winfspMapped(r-0xF000):
			b.WriteByte(byte(r - 0xF000))
		default:
			b.WriteRune(r)
		}
	}
	return b.String()
}

// Every entry of a tree published on Linux, listed through the core's
// Windows view and opened by Windows under the name listed, is found by
// the path WinFsp passes on once fromWinFsp has undone WinFsp's mapping.
func TestFromWinFspFindsListedNames(t *testing.T) {
	w := fstest.NewWorld()
	ctx := context.Background()
	if _, err := w.AddTemplate(ctx, "lin", fstest.LinuxNames()); err != nil {
		t.Fatal(err)
	}
	core, err := fs.New(fs.Config{Blocks: w.Blocks, Catalog: w.Catalog, Meta: memstore.New(),
		StateDir: disktest.TempDir(t), FlushInterval: -1, MapNames: true, CaseInsensitive: true})
	if err != nil {
		t.Fatal(err)
	}
	defer core.Close(ctx)
	var walk func(dir string)
	walk = func(dir string) {
		n, err := core.Walk(ctx, dir)
		if err != nil {
			t.Fatal(err)
		}
		ents, err := n.(fs.Dir).ReadDir(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			win := strings.ReplaceAll(dir, "/", `\`) + `\` + e.Name
			p := fromWinFsp(winfspToPosix(win))
			if _, err := core.Walk(ctx, p); err != nil {
				t.Errorf("Windows opens %+q, WinFsp passes %+q: %v", win, winfspToPosix(win), err)
			}
			if e.Mode.IsDir() {
				walk(dir + "/" + e.Name)
			}
		}
	}
	walk("/templates/lin")
}

// FuzzFromWinFsp: for any name Windows can pass (none of the characters
// WinFsp maps), fromWinFsp restores what WinFsp's translation changed.
func FuzzFromWinFsp(f *testing.F) {
	for _, s := range []string{"a\uF03Ab", "\uF000\uF03A", `x\y`, "CO\uF04E", "dot\uF02E", "bad\uF0FFname", "\uF07C\uF001"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, w string) {
		if !utf8.ValidString(w) || strings.ContainsFunc(w, func(r rune) bool { return winfspMapped(r) || r == '/' || r == 0 }) {
			return
		}
		if got := fromWinFsp(winfspToPosix(w)); got != w {
			t.Fatalf("%+q: WinFsp passes %+q, restored as %+q", w, winfspToPosix(w), got)
		}
	})
}
