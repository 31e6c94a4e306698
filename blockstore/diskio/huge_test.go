package diskio

import (
	"testing"
	"unsafe"
)

func TestHugeBuffer(t *testing.T) {
	for _, n := range []int{4096, 1 << 20, 2 << 20, 5<<20 + 4096, 16 << 20} {
		b := HugeBuffer(n)
		if len(b) != n || cap(b) != n {
			t.Fatalf("HugeBuffer(%d): len %d cap %d", n, len(b), cap(b))
		}
		at := uintptr(unsafe.Pointer(&b[0]))
		if !Aligned(b[:n&^(DirectAlign-1)]) {
			t.Fatalf("HugeBuffer(%d) at %#x: not aligned for O_DIRECT", n, at)
		}
		for i := range b {
			if b[i] != 0 {
				t.Fatalf("HugeBuffer(%d): byte %d is %d", n, i, b[i])
			}
		}
		if n < hugePage {
			continue
		}
		if at%hugePage != 0 {
			t.Fatalf("HugeBuffer(%d) at %#x: not on a huge page boundary", n, at)
		}
		checkHugeAdvice(t, n, at)
	}
}

func contains(s []string, x string) bool {
	for _, e := range s {
		if e == x {
			return true
		}
	}
	return false
}

func TestSlabs(t *testing.T) {
	for _, size := range []int{64 << 10, 100 << 10, 3 << 20} {
		s := NewSlabs(size)
		want := (size + DirectAlign - 1) &^ (DirectAlign - 1)
		seen := map[uintptr]bool{}
		var bufs [][]byte
		for range 3 * slabChunk / want {
			b := s.Get()
			if len(b) != want || cap(b) != want || !Aligned(b) {
				t.Fatalf("size %d: buffer len %d cap %d aligned %v", size, len(b), cap(b), Aligned(b))
			}
			at := uintptr(unsafe.Pointer(&b[0]))
			if seen[at] {
				t.Fatalf("size %d: buffer at %#x handed out twice", size, at)
			}
			seen[at] = true
			for i := range b {
				b[i] = byte(len(bufs))
			}
			bufs = append(bufs, b)
		}
		for i, b := range bufs { // no two buffers overlap
			for j, c := range b {
				if c != byte(i) {
					t.Fatalf("size %d: buffer %d byte %d is %d: overlapped", size, i, j, c)
				}
			}
		}
	}
}
