package s3store

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// benchStores opens the two stores compared on this machine: badgerstore
// (the embedded default) and s3store over versitygw on loopback, its
// index in a badgerstore.
func benchStores(b *testing.B) []struct {
	name string
	st   blockstore.Store
} {
	srv := s3test.Start(b)
	bs, err := badgerstore.Open(disktest.TempDir(b), badgerstore.Config{})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { bs.Close() })
	return []struct {
		name string
		st   blockstore.Store
	}{{"badger", bs}, {"s3", openT(b, srv, Config{})}}
}

const benchBatch = 64

// BenchmarkS3StorePut puts batches of 64 new incompressible 64 KiB blocks
// (4 MiB, one pack per Put on s3), each Put durable: MB/s counts plain
// bytes.
func BenchmarkS3StorePut(b *testing.B) {
	for _, s := range benchStores(b) {
		// New blocks every time (Put skips present ones), across the
		// runs b.Run makes of one store: a counter stamped into each.
		seq := uint64(0)
		b.Run(s.name, func(b *testing.B) {
			r := rand.New(rand.NewPCG(1, 2))
			plains := make([][]byte, benchBatch)
			for i := range plains {
				plains[i] = storetest.RandomBytes(r, blockstore.DefaultBlockSize)
			}
			blocks := make([]blockstore.Block, benchBatch)
			b.SetBytes(benchBatch * blockstore.DefaultBlockSize)
			for b.Loop() {
				b.StopTimer()
				for i, p := range plains {
					seq++
					binary.LittleEndian.PutUint64(p, seq)
					blocks[i] = storetest.NewBlock(p)
				}
				b.StartTimer()
				if err := s.st.Put(b.Context(), blocks...); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkS3StoreGet reads 64 KiB blocks back, verified, one Get each
// (on s3 one ranged GET each), from 16 MiB of blocks.
func BenchmarkS3StoreGet(b *testing.B) {
	for _, s := range benchStores(b) {
		r := rand.New(rand.NewPCG(3, 4))
		var blocks []blockstore.Block
		for range 256 {
			blocks = append(blocks, storetest.NewBlock(storetest.RandomBytes(r, blockstore.DefaultBlockSize)))
		}
		if err := s.st.Put(b.Context(), blocks...); err != nil {
			b.Fatal(err)
		}
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(blockstore.DefaultBlockSize)
			var buf []byte
			for n := 0; b.Loop(); n++ {
				var err error
				buf, err = s.st.Get(b.Context(), blocks[n%len(blocks)].ID, buf[:0])
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkS3StoreGetRun reads 64 blocks put in order with one GetRun,
// as a sequential reader does (on s3 one ranged GET for the run).
func BenchmarkS3StoreGetRun(b *testing.B) {
	for _, s := range benchStores(b) {
		r := rand.New(rand.NewPCG(5, 6))
		var blocks []blockstore.Block
		for range benchBatch {
			blocks = append(blocks, storetest.NewBlock(storetest.RandomBytes(r, blockstore.DefaultBlockSize)))
		}
		if err := s.st.Put(b.Context(), blocks...); err != nil {
			b.Fatal(err)
		}
		ids := storetest.IDs(blocks)
		b.Run(s.name, func(b *testing.B) {
			rg := s.st.(blockstore.RunGetter)
			dst := make([]byte, len(ids)*blockstore.DefaultBlockSize)
			done := make([]bool, len(ids))
			b.SetBytes(int64(len(dst)))
			for b.Loop() {
				if err := rg.GetRun(b.Context(), ids, blockstore.DefaultBlockSize, dst, done); err != nil {
					b.Fatal(err)
				}
				for i, ok := range done {
					if !ok {
						b.Fatalf("block %d undone", i)
					}
				}
			}
		})
	}
}
