//go:build linux

package gofuse_test

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// BenchmarkCloneIO compares the ways the kernel can cache clone files
// (gofuse.CacheMode) with the local disk, on the I/O of a running VM:
// 4 KiB random writes and reads in a 64 MiB file whose blocks are all
// local already, 4 KiB writes each followed by fdatasync (a guest with a
// write-through disk cache), and 1 MiB sequential writes.
//
//	go test -run '^$' -bench CloneIO -benchtime 2s ./fs/gofuse/
//
// Results and the choice they led to are in the package doc (doc.go).
func BenchmarkCloneIO(b *testing.B) {
	const size = 64 << 20
	modes := []struct {
		name string
		mode gofuse.CacheMode
	}{
		{"writeback", gofuse.CacheWriteback},
		{"writethrough", gofuse.CacheWritethrough},
		{"direct", gofuse.CacheDirect},
		{"native", -1},
	}
	for _, m := range modes {
		b.Run(m.name, func(b *testing.B) {
			var path string
			if m.mode < 0 {
				path = filepath.Join(b.TempDir(), "bench.img")
			} else {
				tm := benchMount(b, gofuse.Options{CloneCache: m.mode})
				path = tm.path("clones/alice/bench.img")
			}
			f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o644)
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			chunk := random(1<<20, 1)
			for off := int64(0); off < size; off += 1 << 20 {
				if _, err := f.WriteAt(chunk, off); err != nil {
					b.Fatal(err)
				}
			}
			if err := f.Sync(); err != nil {
				b.Fatal(err)
			}
			page := random(4096, 2)
			rng := rand.New(rand.NewPCG(1, 2))
			b.Run("write4k-random", func(b *testing.B) {
				// Timed with the fsync at the end: writeback must not win
				// by leaving its work for later.
				b.SetBytes(4096)
				for range b.N {
					if _, err := f.WriteAt(page, rng.Int64N(size/4096)*4096); err != nil {
						b.Fatal(err)
					}
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
			b.Run("read4k-random", func(b *testing.B) {
				b.SetBytes(4096)
				buf := make([]byte, 4096)
				for b.Loop() {
					if _, err := f.ReadAt(buf, rng.Int64N(size/4096)*4096); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
			b.Run("write4k-fdatasync", func(b *testing.B) {
				b.SetBytes(4096)
				for b.Loop() {
					if _, err := f.WriteAt(page, rng.Int64N(size/4096)*4096); err != nil {
						b.Fatal(err)
					}
					if err := unix.Fdatasync(int(f.Fd())); err != nil {
						b.Fatal(err)
					}
				}
				b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
			})
			b.Run("write1m-seq", func(b *testing.B) {
				b.SetBytes(1 << 20)
				off := int64(0)
				for range b.N {
					if _, err := f.WriteAt(chunk, off); err != nil {
						b.Fatal(err)
					}
					off = (off + 1<<20) % size
				}
				if err := f.Sync(); err != nil {
					b.Fatal(err)
				}
			})
		})
	}
}
