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

// checkHugeAdvice checks that the kernel took HugeBuffer(n)'s advice for
// the buffer at at: its mapping is marked for huge pages.
func checkHugeAdvice(t *testing.T, n int, at uintptr) {
	t.Helper()
	if _, err := os.Stat("/sys/kernel/mm/transparent_hugepage/enabled"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI is set and the kernel has no transparent huge pages: %v", err)
		}
		return // a kernel without THP: the advice fails, the buffer works
	}
	flags := vmFlags(t, at)
	if !contains(flags, "hg") {
		t.Fatalf("HugeBuffer(%d): mapping flags %v lack hg (MADV_HUGEPAGE)", n, flags)
	}
}

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
