package blockstore

import (
	"runtime"

	"github.com/zeebo/blake3"
	"golang.org/x/sys/cpu"
	"lukechampine.com/blake3/guts"
)

// Two BLAKE3 implementations, one hash: zeebo/blake3 (AVX2, 3.2 GB/s on
// 64 KiB here) for any length, and lukechampine.com/blake3's guts package,
// whose AVX-512 kernel compresses 16 chunks (16 KiB) at once, 4.8 GB/s.
// lukechampine's own Sum256 runs that kernel at 1.2 GB/s only: it starts
// goroutines and clears a fresh hasher for every 64 KiB input, so Sum calls
// the kernel itself for the lengths whose BLAKE3 tree is a balanced tree of
// 16 KiB subtrees: 16 KiB times a power of two, which every full block of a
// power-of-two block size at least 16 KiB is. Anything else, and machines
// without AVX-512, take zeebo's. TestSumWide checks the two agree.

// wideBytes is the input of one call of the 16-way kernel.
const wideBytes = guts.MaxSIMD * guts.ChunkSize

// The 16-way kernel reads its input as 16 streams 1 KiB apart, a pattern
// the CPU's prefetcher does not follow: on a block not in the caches
// (fresh from an O_DIRECT read, or from the socket) it ran at 2.2 GB/s
// against 4.4 on a cached one. So sumWide first reads one byte of every
// cache line of the next warmBytes, in order, which the prefetcher does
// follow: 1 GiB of cold 64 KiB blocks then hashed in 0.29 s instead of
// 0.46 (BenchmarkHashCold). zeebo's kernel needs no help.
const (
	warmBytes = 4 * wideBytes // within the 1 MiB L2 of this machine's cores, and more
	cacheLine = 64
)

// warm reads b one cache line at a time and returns a value that depends
// on every read, for runtime.KeepAlive to keep them.
func warm(b []byte) byte {
	var s byte
	for i := 0; i < len(b); i += cacheLine {
		s += b[i]
	}
	return s
}

// useWide is whether Sum takes the 16-way path, and warmWide whether that
// path warms the caches first; tests switch them.
var (
	useWide  = cpu.X86.HasAVX512F
	warmWide = true
)

// Sum returns the ID of the plain block b. An all-zero b still gets its real
// hash; callers that want holes check IsZero first.
func Sum(b []byte) ID {
	if n := len(b) / wideBytes; useWide && n > 0 && n&(n-1) == 0 &&
		len(b)%wideBytes == 0 && len(b) <= MaxBlockSize {
		return sumWide(b, n)
	}
	return ID(blake3.Sum256(b))
}

// sumWide hashes b, n (a power of two) subtrees of 16 KiB, each with one
// call of the kernel. Their chaining values go on a stack that merges a
// pair whenever the count of subtrees so far is even there, as BLAKE3's
// incremental hasher does; the last merge is the root.
func sumWide(b []byte, n int) ID {
	var stack [8][8]uint32 // log2(MaxBlockSize/wideBytes) levels
	depth := 0
	var root guts.Node
	for i := range n {
		if warmWide && i%(warmBytes/wideBytes) == 0 {
			runtime.KeepAlive(warm(b[i*wideBytes : min(len(b), i*wideBytes+warmBytes)]))
		}
		node := guts.CompressBuffer((*[wideBytes]byte)(b[i*wideBytes:]), wideBytes,
			&guts.IV, uint64(i*guts.MaxSIMD), 0)
		if n == 1 {
			root = node
			break
		}
		cv := guts.ChainingValue(node)
		for t := i + 1; t&1 == 0; t >>= 1 {
			depth--
			node = guts.ParentNode(stack[depth], cv, &guts.IV, 0)
			if i == n-1 && depth == 0 {
				root = node
				break
			}
			cv = guts.ChainingValue(node)
		}
		if i < n-1 {
			stack[depth] = cv
			depth++
		}
	}
	root.Flags |= guts.FlagRoot
	words := guts.CompressNode(root)
	out := guts.WordsToBytes(words)
	return ID(out[:IDSize])
}
