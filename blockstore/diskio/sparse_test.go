package diskio

import (
	"bytes"
	"os"
	"path/filepath"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// TestPunch punches ranges out of a file of data and checks what every
// system must give: the punched bytes read as zeros, the others are kept,
// the length stays, the file takes no more space than before, and what
// SeekData calls a hole reads as zeros.
func TestPunch(t *testing.T) {
	const size = 4 << 20
	f, err := os.OpenFile(filepath.Join(disktest.TempDir(t), "f"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := bytes.Repeat([]byte{0xa5}, size)
	if _, err := f.WriteAt(want, 0); err != nil {
		t.Fatal(err)
	}
	if err := Fdatasync(f); err != nil {
		t.Fatal(err)
	}
	before, err := Allocated(f)
	if err != nil || before <= 0 {
		t.Fatalf("Allocated = %d, %v after writing %d bytes", before, err, size)
	}
	for _, r := range [][2]int64{{1 << 20, 1 << 20}, {3<<20 + 100, 5000}, {size - 10, 1 << 20}} {
		if err := Punch(f, r[0], r[1]); err != nil {
			t.Fatalf("Punch(%d, %d): %v", r[0], r[1], err)
		}
		clear(want[r[0]:min(r[0]+r[1], size)])
	}
	got := make([]byte, size+1)
	n, _ := f.ReadAt(got, 0)
	if n != size || !bytes.Equal(got[:n], want) {
		t.Fatalf("read %d bytes after the punches; same as expected: %v", n, bytes.Equal(got[:n], want))
	}
	after, err := Allocated(f)
	if err != nil || after > before {
		t.Fatalf("Allocated = %d, %v after the punches, %d before", after, err, before)
	}
	t.Logf("%d bytes allocated before the punches, %d after", before, after)
	// Walk the file by SeekData: each hole reads as zeros, the data
	// covers every byte that is not, and the last hole is at the length.
	covered := 0
	for off := int64(0); ; {
		at, ok, err := SeekData(f, off, false)
		if err != nil {
			t.Fatal(err)
		}
		end := int64(size)
		if ok {
			end = at
		}
		if bytes.ContainsFunc(want[off:end], func(r rune) bool { return r != 0 }) {
			t.Fatalf("SeekData(%d, data) = %d, %v: skips data", off, at, ok)
		}
		if !ok {
			break
		}
		hole, ok, err := SeekData(f, at, true)
		if err != nil || !ok || hole <= at || hole > size {
			t.Fatalf("SeekData(%d, hole) = %d, %v, %v", at, hole, ok, err)
		}
		covered += int(hole - at)
		off = hole
	}
	if covered == 0 {
		t.Fatal("SeekData found no data")
	}
	t.Logf("SeekData found %d bytes of data in %d", covered, size)
	if _, ok, err := SeekData(f, size, false); ok || err != nil {
		t.Fatalf("SeekData at the length = %v, %v: want no data", ok, err)
	}
}

// TestPunchPastEnd punches a range beyond the length: nothing changes.
func TestPunchPastEnd(t *testing.T) {
	f, err := os.OpenFile(filepath.Join(disktest.TempDir(t), "f"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte("abc"), 0); err != nil {
		t.Fatal(err)
	}
	if err := Punch(f, 1, 1<<20); err != nil {
		t.Fatal(err)
	}
	st, err := f.Stat()
	if err != nil || st.Size() != 3 {
		t.Fatalf("length %v, %v after a punch past the end; want 3", st.Size(), err)
	}
	b := make([]byte, 3)
	if _, err := f.ReadAt(b, 0); err != nil || string(b) != "a\x00\x00" {
		t.Fatalf("read %q, %v", b, err)
	}
}
