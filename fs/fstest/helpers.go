package fstest

// Helpers of the tests of the core and of both adapters, on every system.

import (
	"bytes"
	"context"
	"io"
	"os"
	"testing"
	"unsafe"

	"github.com/dvfs-project/dvfs/fs"
)

// SameBytes fails t where got is not want, saying where they differ.
func SameBytes(t *testing.T, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	if len(got) != len(want) {
		t.Fatalf("%s: %d bytes, want %d", what, len(got), len(want))
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("%s: first difference at byte %d: %#x, want %#x", what, i, got[i], want[i])
		}
	}
}

// ReadFile is os.ReadFile, failing t on an error.
func ReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// Pread reads up to n bytes at off; fewer at the end of the file.
func Pread(t *testing.T, f *os.File, off int64, n int) []byte {
	t.Helper()
	p := make([]byte, n)
	k, err := f.ReadAt(p, off)
	if err != nil && err != io.EOF {
		t.Fatalf("pread %s at %d: %v", f.Name(), off, err)
	}
	return p[:k]
}

// Pwrite writes p at off.
func Pwrite(t *testing.T, f *os.File, p []byte, off int64) {
	t.Helper()
	if _, err := f.WriteAt(p, off); err != nil {
		t.Fatalf("pwrite %s at %d: %v", f.Name(), off, err)
	}
}

// OpenFile opens p (mode 0644 if created); t.Cleanup closes it.
func OpenFile(t *testing.T, p string, flag int) *os.File {
	t.Helper()
	f, err := os.OpenFile(p, flag, 0o644)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// Ls lists the names in directory p.
func Ls(t *testing.T, p string) []string {
	t.Helper()
	ents, err := os.ReadDir(p)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// Random returns n pseudo-random bytes from seed.
func Random(n int, seed uint64) []byte {
	p := make([]byte, n)
	Fill(p, seed, 0)
	return p
}

// Zeros fails t where p holds anything but zeros.
func Zeros(t *testing.T, what string, p []byte) {
	t.Helper()
	for i, b := range p {
		if b != 0 {
			t.Fatalf("%s: byte %d is %#x, want 0", what, i, b)
		}
	}
}

// CoreRead reads a file through the core, under the kernel's caches.
func CoreRead(t *testing.T, core *fs.FS, p string) []byte {
	t.Helper()
	n, err := core.Walk(context.Background(), p)
	if err != nil {
		t.Fatalf("core lookup %s: %v", p, err)
	}
	h, err := n.(fs.File).Open(context.Background(), os.O_RDONLY)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Release(context.Background())
	a, _ := n.Attr(context.Background())
	buf := make([]byte, a.Size)
	k, err := h.ReadAt(context.Background(), buf, 0)
	if err != nil {
		t.Fatal(err)
	}
	return buf[:k]
}

// AlignedBuf returns n bytes aligned for O_DIRECT.
func AlignedBuf(n int) []byte {
	b := make([]byte, n+4096)
	off := 4096 - int(uintptr(unsafe.Pointer(&b[0]))&4095)
	return b[off : off+n]
}
