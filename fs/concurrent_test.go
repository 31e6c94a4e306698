package fs_test

import (
	"sync"
	"testing"

	"github.com/dvfs-project/dvfs/fs/fstest"
)

// TestConcurrent runs writers on disjoint and on shared blocks, readers
// and syncs at once (run it with -race), then checks every byte.
func TestConcurrent(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	base := fstest.VMEntry(2, "disk.vmdk")
	p := root + "/disk.vmdk"
	n, h := walk(t, fsys, p), openW(t, fsys, p)
	m := newModel(&base)

	const writers = 4
	const piece = 512
	type write struct {
		off  int64
		data []byte
	}
	// Writer w owns blocks w, w+writers, ... of the first 16 blocks, and
	// the w-th piece of every 4 KiB of blocks 20 to 23 (shared blocks,
	// disjoint bytes), and grows the file in its own blocks past the end.
	plan := make([][]write, writers)
	for w := range writers {
		for b := int64(w); b < 16; b += writers {
			d := make([]byte, 3000)
			fstest.Fill(d, uint64(w), uint64(b))
			plan[w] = append(plan[w], write{b*bs + 100, d})
		}
		for off := int64(20 * bs); off < 24*bs; off += 4096 {
			d := make([]byte, piece)
			fstest.Fill(d, uint64(w), uint64(off))
			plan[w] = append(plan[w], write{off + int64(w)*piece, d})
		}
		d := make([]byte, 1000)
		fstest.Fill(d, uint64(w), 99)
		plan[w] = append(plan[w], write{base.Size + int64(w+1)*bs, d})
	}
	var wg sync.WaitGroup
	errs := make(chan error, 100)
	for w := range writers {
		wg.Go(func() {
			for _, x := range plan[w] {
				if _, err := h.WriteAt(ctx, x.data, x.off); err != nil {
					errs <- err
				}
			}
		})
	}
	for r := range 3 {
		wg.Go(func() {
			buf := make([]byte, 128<<10)
			rh := open(t, fsys, p, 0)
			for i := range 40 {
				if _, err := rh.ReadAt(ctx, buf, int64((i*7+r)%48)*bs/2); err != nil {
					errs <- err
				}
			}
		})
	}
	wg.Go(func() {
		for range 5 {
			if err := h.Sync(ctx, false); err != nil {
				errs <- err
			}
			if err := fsys.Flush(ctx); err != nil {
				errs <- err
			}
		}
	})
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	for w := range writers {
		for _, x := range plan[w] {
			m.write(x.off, x.data)
		}
	}
	m.check(t, "after concurrent writes", n, h)
	if err := fsys.Close(ctx); err != nil {
		t.Fatal(err)
	}
	fsys = e.mount(t)
	m.check(t, "after remount", walk(t, fsys, p), open(t, fsys, p, 0))
}
