//go:build linux

package gofuse_test

import (
	"errors"
	"os"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// TestNoSpace puts the overlay on a 4 MiB tmpfs and fills it: O_DIRECT
// writes get ENOSPC themselves, buffered ones at fsync (the kernel's
// writeback reports it there); blocks written before read back intact,
// and once a file is deleted writing works again.
func TestNoSpace(t *testing.T) {
	requireFuse(t)
	state := t.TempDir()
	if err := unix.Mount("tmpfs", state, "tmpfs", 0, "size=4m"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root and must mount the tmpfs: %v", err)
		}
		t.Skipf("cannot mount a tmpfs for the overlay (not root?): %v; this never skips in CI", err)
	}
	t.Cleanup(func() { unix.Unmount(state, unix.MNT_DETACH) })
	tm := remount(t, memstore.New(), state, gofuse.Options{})
	cl := tm.path("clones/alice")

	keep := random(bs, 5)
	g := openFile(t, cl+"/keep.img", os.O_RDWR|os.O_CREATE)
	pwrite(t, g, keep, 0)
	if err := g.Sync(); err != nil {
		t.Fatal(err)
	}

	f := openFile(t, cl+"/fill.img", os.O_RDWR|os.O_CREATE|unix.O_DIRECT)
	buf := alignedBuf(bs)
	copy(buf, random(bs, 6))
	var err error
	var off int64
	for off = 0; off < 16<<20; off += bs {
		if _, err = f.WriteAt(buf, off); err != nil {
			break
		}
	}
	if !errors.Is(err, unix.ENOSPC) {
		t.Fatalf("O_DIRECT writes to a full overlay: %v at %d, want ENOSPC", err, off)
	}
	// A partial write into a base block on the full disk: ENOSPC, at the
	// write or at fsync, and the block reads as before.
	d := openFile(t, cl+"/disk.vmdk", os.O_RDWR)
	before := pread(t, d, 3*bs, bs)
	_, werr := d.WriteAt([]byte("half"), 3*bs+100)
	serr := d.Sync()
	if !errors.Is(werr, unix.ENOSPC) && !errors.Is(serr, unix.ENOSPC) {
		t.Fatalf("buffered write on a full overlay: write %v, fsync %v; want ENOSPC", werr, serr)
	}
	after := pread(t, openFile(t, cl+"/disk.vmdk", os.O_RDONLY|unix.O_DIRECT), 3*bs, bs)
	sameBytes(t, "failed block", after, before)
	sameBytes(t, "kept file", pread(t, g, 0, bs), keep)

	f.Close()
	if err := os.Remove(cl + "/fill.img"); err != nil {
		t.Fatal(err)
	}
	// The kernel sends the release of fill.img after close returns; its
	// data is freed once the mount has it. (Under load the fsync below
	// once ran first and still saw a full disk.)
	waitFree(t, state, 1<<20)
	d2 := openFile(t, cl+"/disk.vmdk", os.O_RDWR)
	pwrite(t, d2, []byte("room again"), 3*bs+100)
	if err := d2.Sync(); err != nil {
		t.Fatalf("fsync once space is back: %v", err)
	}
	got := pread(t, openFile(t, cl+"/disk.vmdk", os.O_RDONLY|unix.O_DIRECT), 3*bs, bs)
	want := append([]byte(nil), before...)
	copy(want[100:], "room again")
	sameBytes(t, "after space came back", got, want)
}

// waitFree waits until the file system at dir has n bytes free.
func waitFree(t *testing.T, dir string, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		var st unix.Statfs_t
		if err := unix.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		if st.Bavail*uint64(st.Bsize) >= n {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: %d bytes free after 10 s, want %d", dir, st.Bavail*uint64(st.Bsize), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
