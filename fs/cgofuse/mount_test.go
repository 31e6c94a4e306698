//go:build linux && cgo && fuse3

package cgofuse_test

import (
	"context"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

// mount mounts w through the adapter on fresh state under t.TempDir();
// t.Cleanup unmounts it and closes the core.
func mount(t testing.TB, w *fstest.World) fstest.Mounted {
	t.Helper()
	m, _ := mountState(t, w, memstore.New(), t.TempDir(), false)
	return m
}

// differences are the outcomes of the POSIX table that differ from
// fs/gofuse's through this adapter on Linux, each with its reason:
// libfuse's high-level API as cgofuse v1.6.0 drives it.
var differences = map[string]string{
	"SEEK_DATA and SEEK_HOLE walk a sparse file":    noLseek,
	"a file written in a hole of a new sparse file": noLseek,
	"a hole punched in data of the base": "cgofuse has no fallocate call, so fallocate(2) fails with EOPNOTSUPP " +
		"(qemu then writes zeros instead of punching)",
	"an open file unlinked: its name is gone, its data stays until close": "libfuse's high-level API renames an unlinked open file " +
		"to .fuse_hiddenN until its last close (hard_remove off: cgofuse resets libfuse's config at init and has no way to set it)",
}

const noLseek = "cgofuse has no lseek call, so the kernel answers SEEK_DATA and SEEK_HOLE itself: " +
	"all data up to the size (copy tools read holes as zeros: the same bytes, more reading)"

// TestPOSIX runs fstest's table of POSIX behaviours through the kernel,
// against the local disk, as fs/gofuse's TestPOSIX does.
func TestPOSIX(t *testing.T) { fstest.RunPOSIX(t, mount, differences) }

// TestIO runs fstest's table of file behaviours, as fs/gofuse's TestMount
// does.
func TestIO(t *testing.T) {
	w, err := fstest.StandardWorld(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	fstest.RunIO(t, mount(t, w))
}
