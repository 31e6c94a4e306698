package server_test

import (
	"context"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/publish"
)

// losingServer is the real client with one fault on top: every third
// upload is answered as taken and never sent, as by a server killed after
// answering an upload and before storing it, the publish going on through
// another server of the same repository.
type losingServer struct {
	*client.Client
	uploads, lost atomic.Int64
	changeOnLoss  func()
}

func (s *losingServer) UploadParts(ctx context.Context, parts [][]byte) error {
	if s.uploads.Add(1)%3 == 0 {
		s.lost.Add(1)
		if s.changeOnLoss != nil {
			s.changeOnLoss()
		}
		return nil
	}
	return s.Client.UploadParts(ctx, parts)
}

func randomTree(t *testing.T, size int) string {
	t.Helper()
	dir := disktest.TempDir(t)
	data := make([]byte, size)
	rnd := rand.NewChaCha8([32]byte{7})
	rnd.Read(data)
	if err := os.WriteFile(filepath.Join(dir, "vm.vmdk"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(dir, "vm.vmx"), []byte("displayName = \"vm\"\n"), 0o644)
	return dir
}

// A commit that finds blocks missing, which the server had answered for,
// makes the publish send them again and commit once: one whole version.
func TestPublishResendsBlocksTheCommitLacks(t *testing.T) {
	for _, deferred := range []bool{false, true} {
		t.Run(map[bool]string{false: "compressed", true: "deferred"}[deferred], func(t *testing.T) {
			e := newEnv(t)
			ctx := context.Background()
			src := randomTree(t, 3<<20)
			lossy := &losingServer{Client: e.admin}
			res, err := publish.Publish(ctx, publish.Config{Server: lossy, Name: "vm", Dir: src, BatchBlocks: 4, Deferred: deferred})
			if err != nil {
				t.Fatal(err)
			}
			if lossy.lost.Load() == 0 || res.ResentBlocks == 0 {
				t.Fatalf("no upload was lost (%d) or none sent again: %+v", lossy.lost.Load(), res)
			}
			if res.Info.Version != 1 {
				t.Fatalf("committed as version %d, want 1", res.Info.Version)
			}
			if _, _, err := e.admin.Manifest(ctx, "vm", 2); err == nil {
				t.Fatal("a second version appeared")
			}
			e.exportSame(t, "vm", 1, src, "vm.vmx", "vm.vmdk")
		})
	}
}

// A block that changed in the tree since it was hashed is not sent in its
// place: the publish fails and commits nothing.
func TestPublishResendRefusesAChangedTree(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	src := randomTree(t, 3<<20)
	lossy := &losingServer{Client: e.admin}
	lossy.changeOnLoss = func() {
		f, err := os.OpenFile(filepath.Join(src, "vm.vmdk"), os.O_RDWR, 0)
		if err != nil {
			t.Error(err)
			return
		}
		defer f.Close()
		zeros := make([]byte, 3<<20)
		for i := range zeros {
			zeros[i] = 0x5a
		}
		f.WriteAt(zeros, 0)
	}
	_, err := publish.Publish(ctx, publish.Config{Server: lossy, Name: "vm", Dir: src, BatchBlocks: 4})
	if err == nil || !strings.Contains(err.Error(), "changed while publishing") {
		t.Fatalf("publishing a tree that changed: %v", err)
	}
	if _, _, err := e.admin.Manifest(ctx, "vm", 1); err == nil {
		t.Fatal("a version was committed")
	}
}
