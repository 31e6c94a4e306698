package publish

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// memServer is a publish target in memory: it checks every uploaded frame
// as the real server does, and keeps the committed manifest.
type memServer struct {
	store *memstore.Store
	mu    sync.Mutex
	m     *manifest.Manifest
}

func (s *memServer) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	return s.store.Missing(ctx, ids)
}

func (s *memServer) UploadParts(ctx context.Context, parts [][]byte) error {
	return api.ParseBatch(bytes.Join(parts, nil), func(id blockstore.ID, frame []byte) error {
		if err := blockstore.Verify(id, frame); err != nil {
			return err
		}
		return s.store.Put(ctx, blockstore.Block{ID: id, Frame: bytes.Clone(frame)})
	})
}

func (s *memServer) Commit(ctx context.Context, m *manifest.Manifest) (api.VersionInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = m
	return api.VersionInfo{Name: m.Name, Version: 1}, nil
}

// TestPublishReadsEveryByte publishes files of awkward sizes (empty, under
// a sector, a sector and a bit, whole blocks, a partial last block, holes)
// from a disk directory (read with O_DIRECT) and, when there is one, from
// tmpfs, and rebuilds each file from the manifest and the uploaded blocks;
// with Deferred, every uploaded frame is a deferred one, and otherwise none
// is.
func TestPublishReadsEveryByte(t *testing.T) {
	for _, deferred := range []bool{false, true} {
		t.Run(fmt.Sprintf("deferred=%v", deferred), func(t *testing.T) { testPublishReadsEveryByte(t, deferred) })
	}
}

func testPublishReadsEveryByte(t *testing.T, deferred bool) {
	dirs := map[string]string{"disk": t.TempDir()}
	if shm, err := os.MkdirTemp("/dev/shm", "dvfs-publish"); err == nil {
		t.Cleanup(func() { os.RemoveAll(shm) })
		dirs["tmpfs"] = shm
	}
	for name, dir := range dirs {
		t.Run(name, func(t *testing.T) {
			r := rand.New(rand.NewPCG(1, 2))
			bs := blockstore.DefaultBlockSize
			files := map[string][]byte{}
			for i, size := range []int{0, 1, 4095, 4097, bs, 3*bs + 123, 40*bs + 4096} {
				data := make([]byte, size)
				for k := range data {
					data[k] = byte(r.Uint32())
				}
				files[filepath.Join("d", string(rune('a'+i)))] = data
			}
			// A sparse file: data, a hole of 5 blocks, data ending mid-block.
			sparse := make([]byte, 9*bs+777)
			for k := range sparse[:bs+10] {
				sparse[k] = byte(r.Uint32())
			}
			for k := 7 * bs; k < len(sparse); k++ {
				sparse[k] = byte(r.Uint32())
			}
			files["sparse"] = sparse
			os.MkdirAll(filepath.Join(dir, "d"), 0o755)
			for p, data := range files {
				if p == "sparse" {
					f, err := os.Create(filepath.Join(dir, p))
					if err != nil {
						t.Fatal(err)
					}
					f.WriteAt(sparse[:bs+10], 0)
					f.WriteAt(sparse[7*bs:], 7*int64(bs))
					f.Close()
					continue
				}
				if err := os.WriteFile(filepath.Join(dir, p), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			srv := &memServer{store: memstore.New()}
			res, err := Publish(t.Context(), Config{Server: srv, Name: "awkward", Dir: dir, Deferred: deferred})
			if err != nil {
				t.Fatal(err)
			}
			if res.HoleBlocks < 5 {
				t.Errorf("%d hole blocks; want at least the sparse file's 5", res.HoleBlocks)
			}
			for p, want := range files {
				f, ok := srv.m.Lookup(filepath.ToSlash(p))
				if !ok {
					t.Fatalf("%s not in the manifest", p)
				}
				var got []byte
				for _, id := range f.Blocks {
					if id.IsHole() {
						got = append(got, make([]byte, min(bs, int(f.Size)-len(got)))...)
						continue
					}
					if got, err = srv.store.Get(t.Context(), id, got); err != nil {
						t.Fatalf("%s: %v", p, err)
					}
					frame, err := srv.store.GetFrame(t.Context(), id, nil)
					if err != nil || blockstore.Deferred(frame) != deferred {
						t.Fatalf("%s: uploaded frame deferred %v, want %v (%v)", p, blockstore.Deferred(frame), deferred, err)
					}
				}
				if !bytes.Equal(got, want) {
					t.Errorf("%s: rebuilt %d bytes, want %d, equal %v", p, len(got), len(want), bytes.Equal(got, want))
				}
			}
		})
	}
}
