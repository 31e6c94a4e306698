package blockstore

import (
	"crypto/sha256"
	"fmt"
	"strings"
	"testing"

	"github.com/zeebo/blake3"
	lblake3 "lukechampine.com/blake3"
)

func TestParseID(t *testing.T) {
	id := Sum([]byte("dvfs"))
	s := id.String()
	tests := []struct {
		name string
		in   string
		want ID
		ok   bool
	}{
		{"round trip", s, id, true},
		{"upper case", strings.ToUpper(s), id, true},
		{"hole", strings.Repeat("0", 64), Hole, true},
		{"empty", "", ID{}, false},
		{"short", s[:63], ID{}, false},
		{"long", s + "0", ID{}, false},
		{"prefix only", id.Short(), ID{}, false},
		{"not hex", "g" + s[1:], ID{}, false},
		{"space", " " + s[1:], ID{}, false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseID(tc.in)
			if (err == nil) != tc.ok {
				t.Fatalf("ParseID(%q) err = %v, want ok=%v", tc.in, err, tc.ok)
			}
			if tc.ok && got != tc.want {
				t.Errorf("ParseID(%q) = %s, want %s", tc.in, got, tc.want)
			}
		})
	}
}

func TestIDString(t *testing.T) {
	// Known answer: BLAKE3-256 of the empty input, so a change of hash
	// function (which would orphan every stored block) cannot go unnoticed.
	const empty = "af1349b9f5f9a1a6a0404dea36dcc9499bcb25c9adc112b7cc9a93cae41f3262"
	id := Sum(nil)
	if id.String() != empty {
		t.Errorf("Sum(nil) = %s, want BLAKE3's %s", id, empty)
	}
	if id.Short() != empty[:12] {
		t.Errorf("Short = %s, want %s", id.Short(), empty[:12])
	}
}

func TestHole(t *testing.T) {
	if !Hole.IsHole() || !(ID{}).IsHole() {
		t.Error("the zero ID is not a hole")
	}
	if Sum(make([]byte, DefaultBlockSize)).IsHole() {
		t.Error("Sum of zeros is the hole ID; callers must test IsZero, not rely on Sum")
	}
	if Sum([]byte{1}).IsHole() {
		t.Error("Sum of a byte is the hole ID")
	}
}

func TestIsZero(t *testing.T) {
	// Short lengths, and lengths around the zero page's size, each with
	// a non-zero byte at every position.
	for _, n := range append(seq(0, 40), seq(4090, 4100)...) {
		b := make([]byte, n)
		if !IsZero(b) {
			t.Fatalf("IsZero(%d zeros) = false", n)
		}
		for i := range b {
			b[i] = 0x80
			if IsZero(b) {
				t.Fatalf("IsZero(%d bytes, byte %d set) = true", n, i)
			}
			b[i] = 0
		}
	}
	big := make([]byte, DefaultBlockSize)
	if !IsZero(big) {
		t.Error("IsZero(64 KiB of zeros) = false")
	}
	big[len(big)-1] = 1
	if IsZero(big) {
		t.Error("IsZero(64 KiB, last byte set) = true")
	}
}

func seq(from, to int) []int {
	var s []int
	for n := from; n <= to; n++ {
		s = append(s, n)
	}
	return s
}

func BenchmarkIsZero(b *testing.B) {
	buf := make([]byte, DefaultBlockSize)
	b.SetBytes(int64(len(buf)))
	for b.Loop() {
		if !IsZero(buf) {
			b.Fatal("not zero")
		}
	}
}

// BenchmarkHash compares the block hash with SHA-256 at the block sizes
// considered: it is the measurement behind the choice of BLAKE3 for ID,
// and of the implementations behind Sum (see sum.go).
func BenchmarkHash(b *testing.B) {
	hashes := []struct {
		name string
		sum  func([]byte)
	}{
		{"sha256", func(p []byte) { sha256.Sum256(p) }},
		{"blake3", func(p []byte) { Sum(p) }},
		{"blake3-zeebo", func(p []byte) { blake3.Sum256(p) }},
		{"blake3-luke", func(p []byte) { lblake3.Sum256(p) }},
	}
	for _, size := range []int{16 << 10, 64 << 10, 256 << 10, 1 << 20} {
		buf := randomBytes(1, size)
		for _, h := range hashes {
			b.Run(fmt.Sprintf("%s/%dKiB", h.name, size>>10), func(b *testing.B) {
				b.SetBytes(int64(size))
				for b.Loop() {
					h.sum(buf)
				}
			})
		}
	}
}

// BenchmarkHashCold hashes 64 KiB blocks that are not in the CPU's caches,
// as a publish does after an O_DIRECT read and a server after a socket
// read: it walks a buffer of 1 GiB, larger than this machine's caches.
// blake3-nowarm is Sum without the warming pass (sum.go).
func BenchmarkHashCold(b *testing.B) {
	const size = DefaultBlockSize
	var region []byte
	hashes := []struct {
		name string
		sum  func([]byte)
	}{
		{"blake3", func(p []byte) { Sum(p) }},
		{"blake3-nowarm", func(p []byte) { warmWide = false; Sum(p); warmWide = true }},
		{"blake3-zeebo", func(p []byte) { blake3.Sum256(p) }},
		{"sha256", func(p []byte) { sha256.Sum256(p) }},
	}
	for _, h := range hashes {
		b.Run(fmt.Sprintf("%s/%dKiB", h.name, size>>10), func(b *testing.B) {
			if region == nil {
				region = randomBytes(2, 1<<30)
			}
			b.SetBytes(size)
			off := 0
			for b.Loop() {
				h.sum(region[off : off+size])
				if off += size; off == len(region) {
					off = 0
				}
			}
		})
	}
}
