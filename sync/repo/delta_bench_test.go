//go:build linux

package repo

import (
	"context"
	"crypto/ed25519"
	"io/fs"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// The benchmarks here chose how the server keeps delta uploads
// (DESIGN.md). Run them with a fixed count, so that the disk
// measurement covers enough blocks:
//
//	go test -run XXX -bench Delta -benchtime 2000x ./sync/repo/

const benchSector = 4096

func benchBlock(r *rand.Rand) []byte {
	b := make([]byte, blockstore.DefaultBlockSize)
	for i := 0; i+8 <= len(b); i += 8 {
		v := r.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

// diskUsage is the bytes the files under dir take on disk (allocated
// blocks, not apparent sizes).
func diskUsage(tb testing.TB, dir string) int64 {
	var n int64
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		n += info.Sys().(*syscall.Stat_t).Blocks * 512
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return n
}

func openBenchRepo(tb testing.TB, dir string, depth int) (*Repo, *badgerstore.Store) {
	st, err := badgerstore.Open(dir, badgerstore.Config{DirectWrites: true})
	if err != nil {
		tb.Fatal(err)
	}
	_, key, _ := ed25519.GenerateKey(nil)
	r, err := New(Config{Store: st, Key: key, MaxDeltaDepth: depth})
	if err != nil {
		tb.Fatal(err)
	}
	return r, st
}

// BenchmarkDeltaStorage stores b.N deltas of one 4 KiB sector against
// random 64 KiB base blocks, 256 to a PutDeltas call as an upload would,
// kept as deltas or rebuilt and stored whole, and reports the disk bytes
// they took (the store's directory, measured with the store closed) per
// byte of changed sector.
func BenchmarkDeltaStorage(b *testing.B) {
	for _, way := range []struct {
		name  string
		depth int
	}{{"delta", DefaultMaxDeltaDepth}, {"whole", -1}} {
		b.Run(way.name, func(b *testing.B) {
			ctx := context.Background()
			dir := b.TempDir()
			rng := rand.New(rand.NewPCG(1, 2))
			const nBases = 256
			r, st := openBenchRepo(b, dir, way.depth)
			var bases []blockstore.Block
			var plains [][]byte
			for range nBases {
				p := benchBlock(rng)
				plains = append(plains, p)
				bases = append(bases, blockstore.Block{ID: blockstore.Sum(p), Frame: blockstore.Encode(nil, p)})
			}
			if err := r.PutBlocks(ctx, bases); err != nil {
				b.Fatal(err)
			}
			st.Close()
			before := diskUsage(b, dir)

			r, st = openBenchRepo(b, dir, way.depth)
			var batch []blockstore.Block
			fill := make([]byte, benchSector)
			b.ResetTimer()
			for i := range b.N {
				base := plains[i%nBases]
				s := rng.IntN(len(base) / benchSector)
				for j := range fill {
					fill[j] = byte(rng.Uint32())
				}
				block := slices.Clone(base)
				copy(block[s*benchSector:], fill)
				frame := blockstore.AppendDeltaFrame(nil, bases[i%nBases].ID, benchSector, 1<<s, block)
				batch = append(batch, blockstore.Block{ID: blockstore.Sum(block), Frame: frame})
				if len(batch) == 256 || i == b.N-1 {
					if err := r.PutDeltas(ctx, batch); err != nil {
						b.Fatal(err)
					}
					batch = batch[:0]
				}
			}
			b.StopTimer()
			st.Close()
			after := diskUsage(b, dir)
			b.ReportMetric(float64(after-before)/float64(b.N*benchSector), "disk/changed-byte")
			b.ReportMetric(float64(after-before)/float64(b.N), "disk-B/block")
		})
	}
}

// BenchmarkDeltaFrame reads (Repo.Frame, as a fetch does) a block stored
// whole (depth 0) and blocks at the ends of delta chains 1, 4 and 8 deep.
func BenchmarkDeltaFrame(b *testing.B) {
	ctx := context.Background()
	r, st := openBenchRepo(b, b.TempDir(), DefaultMaxDeltaDepth)
	defer st.Close()
	rng := rand.New(rand.NewPCG(3, 4))
	chain := [][]byte{benchBlock(rng)}
	if err := r.PutBlocks(ctx, []blockstore.Block{{ID: blockstore.Sum(chain[0]), Frame: blockstore.Encode(nil, chain[0])}}); err != nil {
		b.Fatal(err)
	}
	for i := 1; i <= DefaultMaxDeltaDepth; i++ {
		next := slices.Clone(chain[i-1])
		s := rng.IntN(16)
		copy(next[s*benchSector:(s+1)*benchSector], benchBlock(rng))
		frame := blockstore.AppendDeltaFrame(nil, blockstore.Sum(chain[i-1]), benchSector, 1<<s, next)
		if err := r.PutDeltas(ctx, []blockstore.Block{{ID: blockstore.Sum(next), Frame: frame}}); err != nil {
			b.Fatal(err)
		}
		chain = append(chain, next)
	}
	for _, depth := range []int{0, 1, 4, 8} {
		b.Run("depth="+string(rune('0'+depth)), func(b *testing.B) {
			id := blockstore.Sum(chain[depth])
			var dst []byte
			b.SetBytes(blockstore.DefaultBlockSize)
			for b.Loop() {
				var err error
				if dst, err = r.Frame(ctx, id, dst[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeltaGC collects a repository of 1024 blocks stored whole and
// 1024 deltas on them, all named by one manifest: the cost of the delta
// records' walk and closure.
func BenchmarkDeltaGC(b *testing.B) {
	ctx := context.Background()
	r, st := openBenchRepo(b, b.TempDir(), DefaultMaxDeltaDepth)
	defer st.Close()
	rng := rand.New(rand.NewPCG(5, 6))
	f := manifest.File{Path: "disk.vmdk", Mode: 0o644, MTime: time.Unix(1, 0)}
	var bases, deltas []blockstore.Block
	for range 1024 {
		p := benchBlock(rng)
		bases = append(bases, blockstore.Block{ID: blockstore.Sum(p), Frame: blockstore.Encode(nil, p)})
		next := slices.Clone(p)
		copy(next[:benchSector], benchBlock(rng))
		deltas = append(deltas, blockstore.Block{ID: blockstore.Sum(next), Frame: blockstore.AppendDeltaFrame(nil, blockstore.Sum(p), benchSector, 1, next)})
		f.Blocks = append(f.Blocks, blockstore.Sum(next))
		f.Size += int64(len(next))
	}
	if err := r.PutBlocks(ctx, bases); err != nil {
		b.Fatal(err)
	}
	if err := r.PutDeltas(ctx, deltas); err != nil {
		b.Fatal(err)
	}
	if _, err := r.Commit(ctx, &manifest.Manifest{Kind: manifest.KindTemplate, Name: "xp", BlockSize: blockstore.DefaultBlockSize, Files: []manifest.File{f}}); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		res, err := r.GC(ctx)
		if err != nil || res.Deleted != 0 || res.Kept+res.Skipped != 2048 {
			b.Fatalf("gc %+v, %v", res, err)
		}
	}
}
