package badgerstore

import (
	"context"
	"crypto/rand"
	"fmt"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// BenchmarkBlockSize weighs block sizes for VM disks: what one block costs
// to store and read back (per byte: per-block overheads shrink as blocks
// grow), against what a 4 KiB guest write costs when the first write to a
// block copies it whole (copy-up: grows with the block) and the manifest
// size per GiB (32 bytes per block). See README.md, "Block size".
func BenchmarkBlockSize(b *testing.B) {
	for _, bs := range []int{16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		plain := make([]byte, bs)
		rand.Read(plain)
		b.Run(fmt.Sprintf("put/%dK", bs>>10), func(b *testing.B) {
			s, err := Open(disktest.TempDir(b), Config{Volatile: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			b.SetBytes(int64(bs))
			ctx := context.Background()
			for i := 0; i < b.N; i++ {
				plain[0], plain[1], plain[2], plain[3] = byte(i), byte(i>>8), byte(i>>16), byte(i>>24)
				id := blockstore.Sum(plain)
				if err := s.Put(ctx, blockstore.Block{ID: id, Frame: blockstore.Encode(nil, plain)}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(bs)/4096, "copyup-x-for-4K-write")
			b.ReportMetric(float64(32*(1<<30)/bs)/1024, "manifest-KiB/GiB")
		})
		b.Run(fmt.Sprintf("get/%dK", bs>>10), func(b *testing.B) {
			s, err := Open(disktest.TempDir(b), Config{Volatile: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			ctx := context.Background()
			const n = 64
			ids := make([]blockstore.ID, n)
			for i := range ids {
				plain[0] = byte(i)
				ids[i] = blockstore.Sum(plain)
				if err := s.Put(ctx, blockstore.Block{ID: ids[i], Frame: blockstore.Encode(nil, plain)}); err != nil {
					b.Fatal(err)
				}
			}
			dst := make([]byte, 0, bs)
			b.SetBytes(int64(bs))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				if _, err := s.Get(ctx, ids[i%n], dst[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
