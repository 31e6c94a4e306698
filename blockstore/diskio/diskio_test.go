package diskio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"
	"unsafe"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// TestVectoredRoundTrip writes many small and large buffers with one
// PwritevFull and reads them back with PreadvFull, also past the end.
func TestVectoredRoundTrip(t *testing.T) {
	f, err := os.Create(filepath.Join(disktest.TempDir(t), "f"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var want []byte
	var iov [][]byte
	for i := range 2000 { // more than IOV_MAX (1024) buffers
		b := bytes.Repeat([]byte{byte(i)}, 1+i%700)
		want = append(want, b...)
		iov = append(iov, b)
	}
	if err := PwritevFull(f, iov, 100); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(want)+50)
	n, err := PreadvFull(f, [][]byte{got[:10], got[10:]}, 100)
	if err != nil || n != len(want) || !bytes.Equal(got[:n], want) {
		t.Fatalf("read back %d of %d bytes, err %v, equal %v", n, len(want), err, bytes.Equal(got[:n], want))
	}
	if err := SyncDir(filepath.Dir(f.Name())); err != nil {
		t.Fatal(err)
	}
	if err := SyncDir(filepath.Join(disktest.TempDir(t), "absent")); err == nil {
		t.Fatal("SyncDir of a missing directory succeeded")
	}
}

func TestAlignedBuffer(t *testing.T) {
	for _, n := range []int{1, 4096, 65536, 3<<20 + 5} {
		b := AlignedBuffer(n)
		if len(b) != n || cap(b) != n || uintptr(unsafe.Pointer(&b[0]))%DirectAlign != 0 {
			t.Errorf("AlignedBuffer(%d): len %d cap %d at %p", n, len(b), cap(b), &b[0])
		}
	}
}

func TestAlignedBufferAt(t *testing.T) {
	for _, lead := range []int{0, 1, 4, 6, 4095, 4096} {
		for _, n := range []int{lead + 1, lead + 65536, 1 << 20} {
			b := AlignedBufferAt(n, lead)
			if len(b) != n || cap(b) != n {
				t.Fatalf("AlignedBufferAt(%d, %d): len %d cap %d", n, lead, len(b), cap(b))
			}
			if !Aligned(b[lead:lead+(n-lead)&^(DirectAlign-1)]) && n-lead >= DirectAlign {
				t.Errorf("AlignedBufferAt(%d, %d): byte %d at %p is not aligned", n, lead, lead, &b[lead])
			}
		}
	}
	b := AlignedBuffer(2 * DirectAlign)
	for _, c := range []struct {
		b    []byte
		want bool
	}{
		{b, true},
		{b[:DirectAlign], true},
		{b[1 : DirectAlign+1], false},
		{b[:DirectAlign+512], false},
		{b[:0], false},
	} {
		if got := Aligned(c.b); got != c.want {
			t.Errorf("Aligned(len %d at +%d) = %v", len(c.b), uintptr(unsafe.Pointer(unsafe.SliceData(c.b)))-uintptr(unsafe.Pointer(&b[0])), got)
		}
	}
}
