package diskio

import (
	"bufio"

	"os"
	"strconv"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// vmFlags returns the VmFlags of the mapping of this process that holds
// addr, from /proc/self/smaps.
func vmFlags(t *testing.T, addr uintptr) []string {
	t.Helper()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and /proc/self/smaps is missing: %v", err)
		}
		t.Skipf("no smaps (set CI to make this a failure): %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	in := false
	for sc.Scan() {
		line := sc.Text()
		if lo, hi, ok := mappingRange(line); ok {
			in = lo <= addr && addr < hi
			continue
		}
		if in && strings.HasPrefix(line, "VmFlags:") {
			return strings.Fields(strings.TrimPrefix(line, "VmFlags:"))
		}
	}
	t.Fatalf("no mapping holds %#x", addr)
	return nil
}

// mappingRange parses an smaps header line ("lo-hi perms ...").
func mappingRange(line string) (lo, hi uintptr, ok bool) {
	r, _, found := strings.Cut(line, " ")
	a, b, dash := strings.Cut(r, "-")
	if !found || !dash {
		return 0, 0, false
	}
	l, err1 := strconv.ParseUint(a, 16, 64)
	h, err2 := strconv.ParseUint(b, 16, 64)
	if err1 != nil || err2 != nil {
		return 0, 0, false
	}
	return uintptr(l), uintptr(h), true
}

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
		if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("CI is set and the kernel has no transparent huge pages: %v", err)
			}
			continue // a kernel without THP: the advice fails, the buffer works
		}
		flags := vmFlags(t, at)
		if !contains(flags, "hg") {
			t.Fatalf("HugeBuffer(%d): mapping flags %v lack hg (MADV_HUGEPAGE)", n, flags)
		}
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

// BenchmarkFirstTouch writes one byte into every 4 KiB page of 64 MiB that
// the process has not touched before: the cost of page faults, which is
// high in a VM: on the machine dvfs is developed on, 4.6 ms per MiB in 4
// KiB pages, 0.08 ms in 2 MiB ones (MADV_HUGEPAGE, as HugeBuffer asks).
func BenchmarkFirstTouch(b *testing.B) {
	const size = 64 << 20
	for _, kind := range []string{"4KiB", "2MiB"} {
		b.Run(kind, func(b *testing.B) {
			b.SetBytes(size)
			var faults int64
			for b.Loop() {
				b.StopTimer()
				// Fresh memory every time: a mapping Go has not used.
				m, err := unix.Mmap(-1, 0, size+hugePage, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_PRIVATE|unix.MAP_ANONYMOUS)
				if err != nil {
					b.Fatal(err)
				}
				buf := m[:size]
				if kind == "2MiB" {
					at := uintptr(unsafe.Pointer(&m[0]))
					skip := int((hugePage - at%hugePage) % hugePage)
					buf = m[skip : skip+size]
					unix.Madvise(buf, unix.MADV_HUGEPAGE)
				}
				var ru0, ru1 unix.Rusage
				unix.Getrusage(unix.RUSAGE_THREAD, &ru0)
				b.StartTimer()
				for i := 0; i < len(buf); i += 4096 {
					buf[i] = 1
				}
				b.StopTimer()
				unix.Getrusage(unix.RUSAGE_THREAD, &ru1)
				faults += ru1.Minflt - ru0.Minflt
				unix.Munmap(m)
				b.StartTimer()
			}
			b.ReportMetric(float64(faults)/float64(b.N), "faults/op")
		})
	}
}
