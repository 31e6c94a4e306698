package fs_test

import (
	"os"
	"slices"
	"testing"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

func TestTopLevel(t *testing.T) {
	fsys := newEnv(t).mount(t)
	tests := []struct {
		dir  string
		want []string
	}{
		{"", []string{"clones", "templates"}},
		{"templates", []string{"winxp", "winxp@1", "winxp@2"}},
		{"clones", []string{"alice"}},
		{"templates/winxp", []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs", "winxp.nvram", "winxp.vmx"}},
		{"templates/winxp@1/logs", []string{"vmware.log"}},
		{"clones/alice", []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs", "winxp.nvram", "winxp.vmx"}},
	}
	for _, tc := range tests {
		t.Run("/"+tc.dir, func(t *testing.T) {
			ents, err := walk(t, fsys, tc.dir).(fs.Dir).ReadDir(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if got := names(ents); !slices.Equal(got, tc.want) {
				t.Fatalf("entries %q, want %q", got, tc.want)
			}
		})
	}
	for _, p := range []string{"nope", "templates/nope", "templates/winxp@3", "templates/winxp@0", "templates/winxp@01", "clones/bob", "templates/winxp/nope", "clones/alice/nope"} {
		t.Run("missing "+p, func(t *testing.T) {
			_, err := tryWalk(fsys, p)
			isErr(t, p, err, fs.ErrNotExist)
		})
	}
}

func TestTemplateRead(t *testing.T) {
	fsys := newEnv(t).mount(t)
	for _, tc := range []struct {
		dir string
		v   int
	}{{"templates/winxp", 2}, {"templates/winxp@1", 1}, {"templates/winxp@2", 2}} {
		for _, e := range fstest.VMEntries(tc.v) {
			if e.Mode.Type() != 0 || e.Size > 1<<30 {
				continue
			}
			t.Run(tc.dir+"/"+e.Path, func(t *testing.T) {
				sameBytes(t, e.Path, readAll(t, fsys, tc.dir+"/"+e.Path), e.Bytes())
			})
		}
	}
	t.Run("big file past 4 GiB", func(t *testing.T) {
		e := fstest.VMEntry(2, "big.vmdk")
		h := open(t, fsys, "templates/winxp/big.vmdk", os.O_RDONLY)
		for _, off := range []int64{0, 1 << 20, fstest.BigSize / 2, 4<<30 + 7, fstest.BigSize - 70000, fstest.BigSize - 5} {
			want := make([]byte, 100000)
			e.ReadAt(want, off)
			want = want[:min(int64(len(want)), fstest.BigSize-off)]
			sameBytes(t, "big.vmdk", readAt(t, h, off, 100000), want)
		}
		if got := readAt(t, h, fstest.BigSize, 10); len(got) != 0 {
			t.Fatalf("read at EOF gave %d bytes", len(got))
		}
	})
	t.Run("symlink", func(t *testing.T) {
		target, err := walk(t, fsys, "templates/winxp/current.vmdk").(fs.Symlink).Readlink(ctx)
		if err != nil || target != "disk.vmdk" {
			t.Fatalf("readlink = %q, %v", target, err)
		}
	})
	t.Run("attributes", func(t *testing.T) {
		a, err := walk(t, fsys, "templates/winxp/disk.vmdk").Attr(ctx)
		if err != nil {
			t.Fatal(err)
		}
		e := fstest.VMEntry(2, "disk.vmdk")
		if a.Size != e.Size || a.Mode != 0o444 || !a.Immutable || a.Nlink != 1 {
			t.Fatalf("attr %+v", a)
		}
		b, _ := walk(t, fsys, "templates/winxp@2/disk.vmdk").Attr(ctx)
		if a.Ino == b.Ino {
			t.Fatal("winxp and winxp@2 share inode numbers")
		}
	})
}

func TestTemplateReadOnly(t *testing.T) {
	fsys := newEnv(t).mount(t)
	f := walk(t, fsys, "templates/winxp/disk.vmdk").(fs.File)
	for _, flags := range []int{os.O_WRONLY, os.O_RDWR, os.O_RDONLY | os.O_TRUNC} {
		_, err := f.Open(ctx, flags)
		isErr(t, "open for writing", err, fs.ErrReadOnly)
	}
	h := open(t, fsys, "templates/winxp/disk.vmdk", os.O_RDONLY)
	if _, ok := h.(fs.WriteHandle); ok {
		t.Error("a template handle is writable")
	}
	for _, p := range []string{"templates", "templates/winxp", "templates/winxp/logs", "", "clones"} {
		if _, ok := walk(t, fsys, p).(fs.MutableDir); ok {
			t.Errorf("%s is a MutableDir", p)
		}
	}
	if _, ok := walk(t, fsys, "templates/winxp/disk.vmdk").(fs.Setter); ok {
		t.Error("a template file has SetAttr")
	}
}

func TestPrefetch(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	h := open(t, fsys, "templates/winxp/disk.vmdk", os.O_RDONLY)
	before := e.world.Blocks.Prefetched()
	readAt(t, h, 3<<20, 4096)
	readAt(t, h, 100000, 4096)
	if n := e.world.Blocks.Prefetched() - before; n != 0 {
		t.Fatalf("random reads prefetched %d blocks", n)
	}
	for off := int64(0); off < 1<<20; off += 128 << 10 {
		readAt(t, h, off, 128<<10)
	}
	if n := e.world.Blocks.Prefetched() - before; n == 0 {
		t.Fatal("sequential reads prefetched nothing")
	}
}
