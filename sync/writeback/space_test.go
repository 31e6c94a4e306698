//go:build linux

package writeback

import (
	"errors"
	"os"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// An outbox on a small real filesystem (an 8 MiB tmpfs) with a 4 MiB
// reserve: a seal's writes fail with ENOSPC once the next would leave
// less than the reserve free, and the disk keeps it.
func TestOutboxKeepsReserve(t *testing.T) {
	dir := disktest.TempDir(t)
	if err := unix.Mount("tmpfs", dir, "tmpfs", 0, "size=8m"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI runs as root and must mount the tmpfs: %v", err)
		}
		t.Skipf("cannot mount a tmpfs (not root?): %v; this never skips in CI", err)
	}
	t.Cleanup(func() { unix.Unmount(dir, unix.MNT_DETACH) })
	o, err := openOutbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	const reserve = 4 << 20
	o.reserve = reserve
	w := o.create("seal")
	var added int
	for i := range 64 { // 8 MiB of 128 KiB blocks: more than the disk
		p := testBlock(1, i, 128<<10)
		rec := append(make([]byte, outboxRecHdr), p...)
		if err = w.add(blockstore.Sum(p), rec, delta{}); err != nil {
			break
		}
		added++
	}
	if !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("outbox writes past the reserve: %v after %d blocks, want ENOSPC", err, added)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		t.Fatal(err)
	}
	if free := int64(st.Bavail) * int64(st.Bsize); free < reserve {
		t.Fatalf("%d bytes free after the outbox stopped, less than the %d reserve", free, reserve)
	}
	if added == 0 {
		t.Fatal("no block fit, with room above the reserve")
	}
	w.abort()
	t.Logf("%d blocks of 128 KiB written before ENOSPC", added)
}
