//go:build linux

package gofuse_test

import (
	"errors"
	"os"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/fs/fstest"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

const bs = fstest.BlockSize

// The helpers of the shared tables, for this package's other tests.
var (
	sameBytes  = fstest.SameBytes
	readFile   = fstest.ReadFile
	pread      = fstest.Pread
	pwrite     = fstest.Pwrite
	openFile   = fstest.OpenFile
	ls         = fstest.Ls
	random     = fstest.Random
	zeros      = fstest.Zeros
	coreRead   = fstest.CoreRead
	alignedBuf = fstest.AlignedBuf
)

// TestMount runs fstest's table of file behaviours (shared with
// fs/cgofuse), then what only this adapter is checked for here: fallocate
// (cgofuse has no call for it) and the checks that need a helper process.
func TestMount(t *testing.T) {
	tm := mountStandard(t, gofuse.Options{})
	fstest.RunIO(t, fstest.Mounted{Dir: tm.dir, Core: tm.core})
	cl := tm.path("clones/alice")

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
}
