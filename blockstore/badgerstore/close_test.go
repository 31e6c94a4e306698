package badgerstore

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// A store whose directory went away under it (moved, here) cannot write
// out its memtable, and badger retries that every second without end:
// Close gives up after CloseWait with ErrCloseStuck instead of hanging,
// and what the memtable held is in the write-ahead log, which an open of
// a copy of the files as they are replays.
func TestCloseStuck(t *testing.T) {
	if runtime.GOOS != "linux" {
		disktest.SkipOffLinux(t, "a directory with files open in it is not moved elsewhere")
	}
	root := disktest.TempDir(t)
	dir, moved := filepath.Join(root, "store"), filepath.Join(root, "moved")
	cfg := testConfig(t)
	cfg.CloseWait = 2 * time.Second
	s, err := Open(dir, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	blocks := testBlocks(4)
	if err := s.Put(ctx, blocks...); err != nil {
		t.Fatal(err)
	}
	if err := s.CommitMeta(ctx, blockstore.MetaOp{Key: "head", Value: []byte("v1")}); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(dir, moved); err != nil {
		t.Fatal(err)
	}
	released := false
	t.Cleanup(func() {
		// Give badger its directory back, so that its retries succeed
		// and its Close ends.
		if !released {
			os.Rename(moved, dir)
			<-s.dbClosed
		}
	})

	err = s.Close()
	if !errors.Is(err, ErrCloseStuck) {
		t.Fatalf("Close = %v, want ErrCloseStuck", err)
	}
	t.Logf("Close: %v", err)
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if _, err := s.GetMeta(ctx, "head"); !errors.Is(err, blockstore.ErrClosed) {
		t.Errorf("GetMeta after Close = %v, want ErrClosed", err)
	}

	// The files as a process killed now would leave them.
	copied := filepath.Join(root, "copy")
	if out, err := exec.Command("cp", "-a", moved, copied).CombinedOutput(); err != nil {
		t.Fatalf("cp: %v\n%s", err, out)
	}
	c := openT(t, copied)
	checkBlocks(t, c, blocks)
	if v, err := c.GetMeta(ctx, "head"); err != nil || string(v) != "v1" {
		t.Errorf("GetMeta from the write-ahead log = %q, %v", v, err)
	}

	if err := os.Rename(moved, dir); err != nil {
		t.Fatal(err)
	}
	released = true
	if err := <-s.dbClosed; err != nil {
		t.Errorf("badger's Close, once its directory was back: %v", err)
	}
}
