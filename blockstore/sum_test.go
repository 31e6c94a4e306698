package blockstore

import (
	"fmt"
	"testing"

	"github.com/zeebo/blake3"
)

// TestSumWide checks the 16-way path against zeebo's BLAKE3 at every
// length it takes, and at lengths near them that it must leave alone.
// It forces the path on, so machines without AVX-512 check the tree code
// (with guts' AVX2 or generic kernel) as well.
func TestSumWide(t *testing.T) {
	defer func(old bool) { useWide = old }(useWide)
	useWide = true
	var lengths []int
	for n := wideBytes; n <= MaxBlockSize; n *= 2 {
		lengths = append(lengths, n, n-1, n+1, n+guts16k(n))
	}
	lengths = append(lengths, 0, 1, 1024, 3*wideBytes, 2*MaxBlockSize)
	for i, n := range lengths {
		b := randomBytes(uint64(i), n)
		if got, want := Sum(b), ID(blake3.Sum256(b)); got != want {
			t.Errorf("Sum of %d bytes = %s, want BLAKE3's %s", n, got.Short(), want.Short())
		}
	}
}

// guts16k is a length that makes n+guts16k(n) a multiple of 16 KiB that
// is not a power-of-two count of them.
func guts16k(n int) int {
	if n == wideBytes {
		return 2 * wideBytes
	}
	return wideBytes
}

// TestSumKnownAnswer pins the hash of a 64 KiB block to the value of
// another implementation: b3sum (the Rust crate, Debian bookworm).
func TestSumKnownAnswer(t *testing.T) {
	b := make([]byte, 64<<10)
	for i := range b {
		b[i] = byte(i*7 + i/251)
	}
	const want = "34f8f827a7778da7988e56dbf4c6f009b4e1b3c58be3bd7d5e57d4abd5b07ffa"
	for _, wide := range []bool{false, true} {
		t.Run(fmt.Sprintf("wide=%v", wide), func(t *testing.T) {
			defer func(old bool) { useWide = old }(useWide)
			useWide = wide
			if got := Sum(b).String(); got != want {
				t.Errorf("Sum = %s, want %s", got, want)
			}
		})
	}
}
