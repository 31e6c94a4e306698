//go:build linux

package gofuse_test

import (
	"fmt"
	"os"
	"testing"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// TestReadAhead: the mount sets the kernel's readahead for itself, to the
// default or to what it is told, and a sequential read through it still
// returns the template's bytes.
func TestReadAhead(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI is set and the test does not run as root")
		}
		t.Skip("setting a mount's readahead needs root (this never skips in CI)")
	}
	for _, c := range []struct {
		opt    int
		wantKB int
	}{{0, gofuse.DefaultReadAhead >> 10}, {4 << 20, 4096}} {
		t.Run(fmt.Sprint(c.opt), func(t *testing.T) {
			tm := mountStandard(t, gofuse.Options{ReadAhead: c.opt})
			if got := readAheadKB(t, tm.dir); got != c.wantKB {
				t.Fatalf("read_ahead_kb %d, want %d", got, c.wantKB)
			}
			for _, e := range fstest.VMEntries(2) {
				if e.Mode.IsRegular() && e.Size > 1<<20 && e.Size < 1<<30 {
					sameBytes(t, e.Path, readFile(t, tm.path("templates/winxp/"+e.Path)), e.Bytes())
				}
			}
		})
	}
}

func readAheadKB(t *testing.T, mountpoint string) int {
	t.Helper()
	n, err := fs.ReadAhead(mountpoint)
	if err != nil {
		t.Fatal(err)
	}
	return n >> 10
}
