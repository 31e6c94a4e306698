package diskio

import (
	"sync"
	"unsafe"
)

// hugePage is the size of the transparent huge pages HugeBuffer asks for
// (x86-64 and arm64 with 4 KiB base pages).
const hugePage = 2 << 20

// HugeBuffer returns n bytes of Go memory that start on a 2 MiB boundary
// (so also on a DirectAlign one), and asks the kernel to back them with
// transparent huge pages (MADV_HUGEPAGE, which the usual THP setting,
// "madvise", waits for).
//
// Each first touch of a 4 KiB page is a fault, and in a VM a fault is
// dear: on the machine dvfs is developed on, 18 µs, so 4.6 s of CPU per
// GiB touched for the first time, against 0.08 s in 2 MiB pages
// (BenchmarkFirstTouch). A publish of a 2 GiB image into a fresh server
// took 62,000 faults, most of them for its block and upload buffers: a
// fifth of its CPU time. Go's heap does not ask for huge pages itself, so
// the buffers that a process fills by the hundred MiB come from here.
//
// The memory is ordinary Go memory: the garbage collector frees it, and
// nothing needs to be returned. It is zero unless Go hands out reused
// memory, as make does. Where huge pages are off, it is simply a buffer.
func HugeBuffer(n int) []byte {
	if n < hugePage {
		return AlignedBuffer(n)
	}
	b := make([]byte, n+hugePage)
	at := uintptr(unsafe.Pointer(&b[0]))
	skip := int((hugePage - at%hugePage) % hugePage)
	b = b[skip : skip+n : skip+n]
	adviseHuge(b)
	return b
}

// Slabs hands out buffers of one size, aligned for O_DIRECT, carved from
// HugeBuffer chunks: for buffers smaller than a huge page, such as a
// publish's blocks. A chunk is freed by the garbage collector once none of
// its buffers is referenced, so a sync.Pool may drop them as it likes.
type Slabs struct {
	size  int
	chunk int

	mu   sync.Mutex
	rest []byte // of the current chunk
}

// slabChunk is how much memory Slabs takes at a time.
const slabChunk = 2 * hugePage

// NewSlabs returns Slabs of buffers of size bytes, rounded up to a
// multiple of DirectAlign.
func NewSlabs(size int) *Slabs {
	size = (size + DirectAlign - 1) &^ (DirectAlign - 1)
	return &Slabs{size: size, chunk: max(slabChunk, size)}
}

// Get returns a new buffer of the Slabs' size.
func (s *Slabs) Get() []byte {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.rest) < s.size {
		s.rest = HugeBuffer(s.chunk - s.chunk%s.size)
	}
	b := s.rest[:s.size:s.size]
	s.rest = s.rest[s.size:]
	return b
}
