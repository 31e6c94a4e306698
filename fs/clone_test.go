package fs_test

import (
	"os"
	"testing"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

const bs = fstest.BlockSize

// op changes a clone file and its model alike.
type op struct {
	name string
	do   func(t *testing.T, n fs.Setter, h fs.WriteHandle, m *model)
}

func write(off int64, n int, seed uint64) op {
	return op{"write", func(t *testing.T, _ fs.Setter, h fs.WriteHandle, m *model) {
		p := make([]byte, n)
		fstest.Fill(p, seed, uint64(off))
		writeAt(t, h, p, off)
		m.write(off, p)
	}}
}

func truncate(size int64) op {
	return op{"truncate", func(t *testing.T, n fs.Setter, _ fs.WriteHandle, m *model) {
		if _, err := n.SetAttr(ctx, fs.SetAttr{Size: &size}); err != nil {
			t.Fatalf("truncate to %d: %v", size, err)
		}
		m.truncate(size)
	}}
}

func allocate(off, length int64, mode fs.AllocMode) op {
	return op{"allocate", func(t *testing.T, _ fs.Setter, h fs.WriteHandle, m *model) {
		if err := h.Allocate(ctx, off, length, mode); err != nil {
			t.Fatalf("allocate %d+%d mode %#x: %v", off, length, mode, err)
		}
		keep := mode&fs.AllocKeepSize != 0
		switch {
		case mode&(fs.AllocPunchHole|fs.AllocZeroRange) != 0:
			end := off + length
			if keep {
				end = min(end, m.size)
			}
			if off < end {
				m.zero(off, end, keep)
			}
		case !keep && off+length > m.size:
			m.truncate(off + length)
		}
	}}
}

func TestCloneReadsLikeTemplate(t *testing.T) {
	fsys := newEnv(t).mount(t)
	for _, e := range fstest.VMEntries(2) {
		if e.Mode.Type() != 0 || e.Size > 1<<30 {
			continue
		}
		t.Run(e.Path, func(t *testing.T) {
			sameBytes(t, e.Path, readAll(t, fsys, "clones/alice/"+e.Path), e.Bytes())
		})
	}
	a, err := walk(t, fsys, "clones/alice/disk.vmdk").Attr(ctx)
	if err != nil || a.Mode != 0o644 || a.Immutable {
		t.Fatalf("clone attr %+v, %v", a, err)
	}
}

func TestCloneWrites(t *testing.T) {
	disk := fstest.VMEntry(2, "disk.vmdk")
	ds := disk.Size
	tests := []struct {
		name string
		file string
		ops  []op
	}{
		{"partial write in a base block", "disk.vmdk", []op{write(100, 10, 1)}},
		{"write across blocks", "disk.vmdk", []op{write(bs-10, 3*bs, 2)}},
		{"whole blocks", "disk.vmdk", []op{write(2*bs, 2*bs, 3)}},
		{"write into a hole block", "disk.vmdk", []op{write(4*bs+5, 100, 4)}},
		{"rewrite a local block", "disk.vmdk", []op{write(100, 10, 5), write(50, 100, 6), write(0, bs, 7), write(10, 1, 8)}},
		{"write in the last partial block", "disk.vmdk", []op{write(ds-10, 5, 9)}},
		{"append at EOF", "disk.vmdk", []op{write(ds, 1000, 10)}},
		{"sparse write past EOF", "disk.vmdk", []op{write(ds+5*bs+3, 1000, 11)}},
		{"shrink then extend reads zeros", "disk.vmdk", []op{truncate(100000), truncate(3 << 20)}},
		{"shrink a local block then extend", "disk.vmdk", []op{write(2*bs, bs, 12), truncate(2*bs + 100), truncate(4 * bs), write(3*bs+1, 10, 13)}},
		{"shrink to a block boundary then write past", "disk.vmdk", []op{truncate(bs), write(2*bs+7, 10, 14)}},
		{"truncate to zero then write", "disk.vmdk", []op{truncate(0), write(5000, 10, 15)}},
		{"punch hole", "disk.vmdk", []op{write(bs, 10, 16), allocate(bs/2, 3*bs, fs.AllocPunchHole|fs.AllocKeepSize)}},
		{"punch hole past EOF keeps size", "disk.vmdk", []op{allocate(ds-100, 10*bs, fs.AllocPunchHole|fs.AllocKeepSize)}},
		{"zero range grows", "disk.vmdk", []op{allocate(ds-100, 200000, fs.AllocZeroRange)}},
		{"zero range in one block", "disk.vmdk", []op{allocate(10, 100, fs.AllocZeroRange)}},
		{"fallocate grows", "disk.vmdk", []op{allocate(0, ds+3*bs+7, 0)}},
		{"fallocate keep size", "disk.vmdk", []op{allocate(0, 2*ds, fs.AllocKeepSize)}},
		{"empty file grows", "empty", []op{write(3*bs+1, 10, 17), write(0, 1, 18)}},
		{"near 5 GiB", "big.vmdk", []op{write(5<<30-3, 10, 19), write(fstest.BigSize-1, 100, 20), write(4<<30+bs-1, 2, 21)}},
		{"past 5 GiB, then shrink below 4 GiB and grow", "big.vmdk", []op{write(6<<30, 10, 22), truncate(3 << 30), truncate(5 << 30)}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fsys := e.mount(t)
			p := "clones/alice/" + tc.file
			base := fstest.VMEntry(2, tc.file)
			m := newModel(&base)
			n := walk(t, fsys, p).(fs.Setter)
			h := openW(t, fsys, p)
			for i, o := range tc.ops {
				o.do(t, n, h, m)
				m.check(t, tc.name+" after op "+string(rune('0'+i))+" "+o.name, n, h)
			}
			if err := h.Sync(ctx, false); err != nil {
				t.Fatal(err)
			}
			if err := h.Release(ctx); err != nil {
				t.Fatal(err)
			}
			if err := fsys.Close(ctx); err != nil {
				t.Fatal(err)
			}
			// Remount: the same content, and the template unchanged.
			fsys = e.mount(t)
			n = walk(t, fsys, p).(fs.Setter)
			m.check(t, tc.name+" after remount", n, open(t, fsys, p, os.O_RDONLY))
			tm := newModel(&base)
			th := open(t, fsys, "templates/winxp/"+tc.file, os.O_RDONLY)
			for _, win := range m.windows() {
				sameBytes(t, "template", readAt(t, th, win[0], int(win[1])), tm.read(win[0], int(win[1])))
			}
		})
	}
}

func TestWholeBlockWritesSkipTheBase(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	h := openW(t, fsys, "clones/alice/disk.vmdk")
	before := e.world.Blocks.Reads()
	p := make([]byte, 3*bs)
	fstest.Fill(p, 1, 1)
	writeAt(t, h, p, bs)
	writeAt(t, h, p[:bs], 0)
	if n := e.world.Blocks.Reads() - before; n != 0 {
		t.Fatalf("whole-block writes read %d base blocks", n)
	}
	writeAt(t, h, p[:100], 5*bs+1)
	if n := e.world.Blocks.Reads() - before; n != 1 {
		t.Fatalf("a partial write read %d base blocks, want 1", n)
	}
}
