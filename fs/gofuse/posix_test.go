//go:build linux

package gofuse_test

import (
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// TestPOSIX runs fstest's table of POSIX behaviours through the kernel,
// against the local disk (fstest.RunPOSIX); this adapter has no
// differences of its own.
func TestPOSIX(t *testing.T) {
	fstest.RunPOSIX(t, func(t testing.TB, w *fstest.World) fstest.Mounted {
		tm := mountWorld(t, w, memstore.New(), t.TempDir(), gofuse.Options{}, func(*fs.Config) {})
		return fstest.Mounted{Dir: tm.dir, Core: tm.core}
	}, nil)
}
