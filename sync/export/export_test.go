//go:build linux

package export_test

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/export"
)

// mapFetcher serves blocks from a map and records the IDs asked for.
type mapFetcher struct {
	blocks map[blockstore.ID][]byte
	asked  []blockstore.ID
}

func (f *mapFetcher) Fetch(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, plain []byte) error) error {
	for _, id := range ids {
		f.asked = append(f.asked, id)
		if err := fn(id, f.blocks[id]); err != nil {
			return err
		}
	}
	return nil
}

// TestExportHardLinkWrittenOnce exports a manifest without owners or
// atimes (as format 1 has) holding a sparse file with a second name in a
// subdirectory and another file sharing one of its blocks: each block is
// fetched once, the second name is the same inode, the hole stays a hole,
// files belong to whoever exports, and atime is the mtime.
func TestExportHardLinkWrittenOnce(t *testing.T) {
	const bs = 4096
	b0 := bytes.Repeat([]byte("dvfs"), bs/4)
	b1 := []byte("a short last block")
	id0, id1 := blockstore.Sum(b0), blockstore.Sum(b1)
	mtime := time.Date(2100, 1, 1, 0, 0, 0, 999999999, time.UTC)
	dirTime := time.Date(2020, 5, 6, 7, 8, 9, 1, time.UTC)
	file := manifest.File{
		Path:   "a",
		Mode:   0o640,
		Size:   4*bs + int64(len(b1)),
		MTime:  mtime,
		Blocks: []blockstore.ID{id0, blockstore.Hole, blockstore.Hole, blockstore.Hole, id1},
	}
	link := file
	link.Path, link.Link = "d/b", "a"
	m := &manifest.Manifest{
		Kind:      manifest.KindTemplate,
		Name:      "links",
		BlockSize: bs,
		Files: []manifest.File{
			file,
			{Path: "d", Mode: fs.ModeDir | 0o750, MTime: dirTime},
			link,
			{Path: "d/c", Mode: 0o604, Size: bs, MTime: dirTime, Blocks: []blockstore.ID{id0}},
		},
	}
	if err := m.Validate(); err != nil {
		t.Fatal(err)
	}
	src := &mapFetcher{blocks: map[blockstore.ID][]byte{id0: b0, id1: b1}}
	out := filepath.Join(t.TempDir(), "out")
	if err := export.Export(t.Context(), src, m, out); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(src.asked, []blockstore.ID{id0, id1}) {
		t.Errorf("fetched %v, want each block once: %v", src.asked, []blockstore.ID{id0, id1})
	}
	var a, b, c, d unix.Stat_t
	for p, st := range map[string]*unix.Stat_t{"a": &a, "d/b": &b, "d/c": &c, "d": &d} {
		if err := unix.Lstat(filepath.Join(out, p), st); err != nil {
			t.Fatal(err)
		}
	}
	if a.Ino != b.Ino || a.Nlink != 2 {
		t.Errorf("a (inode %d, %d links) and d/b (inode %d) are not one file of two names", a.Ino, a.Nlink, b.Ino)
	}
	want := append(append(slices.Clone(b0), make([]byte, 3*bs)...), b1...)
	for _, p := range []string{"a", "d/b"} {
		if got, err := os.ReadFile(filepath.Join(out, p)); err != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes (%v), want %d", p, len(got), err, len(want))
		}
	}
	if got, err := os.ReadFile(filepath.Join(out, "d/c")); err != nil || !bytes.Equal(got, b0) {
		t.Errorf("d/c: %d bytes (%v), want %d", len(got), err, len(b0))
	}
	if a.Blocks*512 >= a.Size {
		t.Errorf("a takes %d sectors for %d bytes: the hole was written", a.Blocks, a.Size)
	}
	ts := func(t time.Time) unix.Timespec { return unix.Timespec{Sec: t.Unix(), Nsec: int64(t.Nanosecond())} }
	for _, e := range []struct {
		name  string
		st    *unix.Stat_t
		mode  uint32
		mtime time.Time
	}{{"a", &a, unix.S_IFREG | 0o640, mtime}, {"d/c", &c, unix.S_IFREG | 0o604, dirTime}, {"d", &d, unix.S_IFDIR | 0o750, dirTime}} {
		st := e.st
		if st.Mode != e.mode || st.Mtim != ts(e.mtime) || st.Atim != st.Mtim || st.Uid != uint32(os.Geteuid()) || st.Gid != uint32(os.Getegid()) {
			t.Errorf("%s: mode %#o mtime %v atime %v owner %d:%d, want mode %#o, mtime and atime %v, owner %d:%d",
				e.name, st.Mode, st.Mtim, st.Atim, st.Uid, st.Gid, e.mode, ts(e.mtime), os.Geteuid(), os.Getegid())
		}
	}
}
