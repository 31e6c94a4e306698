package badgerstore

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/storetest"
)

// benchKinds are the two kinds of 64 KiB blocks: incompressible (media,
// encrypted or compressed files) and compressible (text, code, binaries).
var benchKinds = []struct {
	name string
	gen  func(r *rand.Rand, n int) []byte
}{
	{"random", storetest.RandomBytes},
	{"compressible", storetest.CompressibleBytes},
}

const batch = 64

// BenchmarkPut puts batches of 64 new 64 KiB blocks, as a client uploads a
// dirty file: MB/s counts plain bytes, each batch synced to disk. The
// cache mode is a workstation's cache (VerifiedPuts, Volatile) storing
// fetched frames: compressed ones are decoded and stored plain.
func BenchmarkPut(b *testing.B) {
	for _, kind := range benchKinds {
		for _, mode := range benchModes {
			b.Run(kind.name+"/"+mode.name, func(b *testing.B) { benchPut(b, kind.gen, mode.verified) })
		}
	}
}

func benchPut(b *testing.B, gen func(*rand.Rand, int) []byte, verified bool) {
	s, err := Open(disktest.TempDir(b), Config{VerifiedPuts: verified, Volatile: verified})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	r := rand.New(rand.NewPCG(1, 2))
	plains := make([][]byte, batch)
	for i := range plains {
		plains[i] = gen(r, blockstore.DefaultBlockSize)
	}
	blocks := make([]blockstore.Block, batch)
	frames := make([][]byte, batch)
	b.SetBytes(batch * blockstore.DefaultBlockSize)
	b.ResetTimer()
	for n := 0; n < b.N; n++ {
		// New blocks every time (Put skips present ones): stamp a
		// counter into each, then frame and hash outside the timer.
		b.StopTimer()
		for i, p := range plains {
			binary.LittleEndian.PutUint64(p, uint64(n*batch+i))
			frames[i] = blockstore.Encode(frames[i][:0], p)
			blocks[i] = blockstore.Block{ID: blockstore.Sum(p), Frame: frames[i]}
		}
		b.StartTimer()
		if err := s.Put(b.Context(), blocks...); err != nil {
			b.Fatal(err)
		}
	}
}

// benchModes are the two ways a store checks a block it reads: by its
// hash (the server's store), or by the CRC kept since a verified Put (a
// workstation's cache: VerifiedPuts, which also keeps blocks plain).
var benchModes = []struct {
	name     string
	verified bool
}{{"hash", false}, {"cache", true}}

// BenchmarkGet reads 64 KiB blocks back, checked, from a store of 16 MiB
// (in the page cache: this measures the store, not the disk).
func BenchmarkGet(b *testing.B) {
	for _, kind := range benchKinds {
		for _, mode := range benchModes {
			s, ids := benchStore(b, kind.gen, mode.verified)
			name := kind.name + "/" + mode.name
			b.Run(name, func(b *testing.B) {
				b.SetBytes(blockstore.DefaultBlockSize)
				var buf []byte
				i := 0
				for b.Loop() {
					var err error
					if buf, err = s.Get(b.Context(), ids[i%len(ids)], buf[:0]); err != nil {
						b.Fatal(err)
					}
					i++
				}
			})
			b.Run(name+"/parallel", func(b *testing.B) {
				b.SetBytes(blockstore.DefaultBlockSize)
				b.RunParallel(func(pb *testing.PB) {
					var buf []byte
					i := rand.IntN(len(ids))
					for pb.Next() {
						var err error
						if buf, err = s.Get(b.Context(), ids[i%len(ids)], buf[:0]); err != nil {
							b.Error(err)
							return
						}
						i++
					}
				})
			})
		}
	}
}

// BenchmarkGetRun reads 1 MiB requests (16 blocks that lie together), as
// a mount serves the kernel's readahead; compressible blocks stored by
// the hash-checking store are compressed, so GetRun leaves them to Get.
func BenchmarkGetRun(b *testing.B) {
	const size, run = blockstore.DefaultBlockSize, 16
	for _, kind := range benchKinds {
		for _, mode := range benchModes {
			s, ids := benchStore(b, kind.gen, mode.verified)
			b.Run(kind.name+"/"+mode.name, func(b *testing.B) {
				b.SetBytes(run * size)
				dst := make([]byte, run*size)
				done := make([]bool, run)
				i := 0
				for b.Loop() {
					at := (i * run) % len(ids)
					if err := s.GetRun(b.Context(), ids[at:at+run], size, dst, done); err != nil {
						b.Fatal(err)
					}
					for k, ok := range done {
						if !ok {
							if _, err := s.Get(b.Context(), ids[at+k], dst[k*size:k*size]); err != nil {
								b.Fatal(err)
							}
						}
					}
					i++
				}
			})
		}
	}
}

func benchStore(b *testing.B, gen func(*rand.Rand, int) []byte, verified bool) (*Store, []blockstore.ID) {
	s, err := Open(disktest.TempDir(b), Config{VerifiedPuts: verified})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { s.Close() })
	r := rand.New(rand.NewPCG(3, 4))
	var ids []blockstore.ID
	for range 4 {
		blocks := make([]blockstore.Block, batch)
		for i := range blocks {
			blocks[i] = storetest.NewBlock(gen(r, blockstore.DefaultBlockSize))
			ids = append(ids, blocks[i].ID)
		}
		if err := s.Put(b.Context(), blocks...); err != nil {
			b.Fatal(err)
		}
	}
	return s, ids
}

// BenchmarkMissing asks about the 32768 blocks of a 2 GiB template, as a
// multicast receiver does when it joins a session: against an empty cache
// (a new workstation) and one that holds every block (nothing to do).
func BenchmarkMissing(b *testing.B) {
	const n = 32768
	var blocks []blockstore.Block
	ids := make([]blockstore.ID, n)
	for i := range ids {
		plain := binary.LittleEndian.AppendUint64(nil, uint64(i)+1)
		ids[i] = blockstore.Sum(plain)
		blocks = append(blocks, blockstore.Block{ID: ids[i], Frame: blockstore.Encode(nil, plain)})
	}
	for _, full := range []bool{false, true} {
		name := "empty"
		if full {
			name = "full"
		}
		b.Run(name, func(b *testing.B) {
			s, err := Open(disktest.TempDir(b), Config{Volatile: true})
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			for i := 0; full && i < n; i += 1024 {
				if err := s.Put(b.Context(), blocks[i:i+1024]...); err != nil {
					b.Fatal(err)
				}
			}
			for b.Loop() {
				missing, err := s.Missing(b.Context(), ids)
				if err != nil {
					b.Fatal(err)
				}
				if full != (len(missing) == 0) {
					b.Fatalf("%d of %d missing", len(missing), len(ids))
				}
			}
		})
	}
}
