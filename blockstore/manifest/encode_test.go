package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

func TestRoundTrip(t *testing.T) {
	tests := []struct {
		name string
		m    *Manifest
	}{
		{"vmware folder, 4 GiB disk", vmwareManifest(65536)},
		{"small", smallManifest()},
		{"clone", &Manifest{Kind: KindClone, Name: "alice-win11", Version: 12, Parent: 11, Created: t0, BlockSize: 65536,
			Files: []File{{Path: "a.vmdk", Mode: 0o600, Size: 65537, MTime: t0, Blocks: []blockstore.ID{testID(7), testID(8)}}}}},
		{"no files", &Manifest{Kind: KindTemplate, Name: "empty", BlockSize: 4096}},
		{"uncommitted, zero times", &Manifest{Kind: KindTemplate, Name: "x", Parent: 3, BlockSize: 1 << 20,
			Files: []File{{Path: "a", Mode: 0o600, Size: 1, Blocks: []blockstore.ID{{}}}}}},
		{"all holes", &Manifest{Kind: KindTemplate, Name: "sparse", Version: 2, Parent: 1, Created: t0, BlockSize: 4096,
			Files: []File{{Path: "a", Mode: 0o600, Size: 1 << 30, MTime: t0, Blocks: make([]blockstore.ID, 1<<18)}}}},
		{"time extremes", &Manifest{Kind: KindTemplate, Name: "t", Created: minTime.UTC(), BlockSize: 4096,
			Files: []File{
				{Path: "epoch", Mode: 0o644, MTime: time.Unix(0, 0).UTC()},
				{Path: "late", Mode: 0o644, MTime: maxTime.UTC()},
				{Path: "pre-epoch", Mode: 0o644, MTime: time.Unix(0, -1).UTC()},
			}}},
		{"special permission bits", &Manifest{Kind: KindTemplate, Name: "p", BlockSize: 4096,
			Files: []File{
				{Path: "sticky", Mode: fs.ModeDir | fs.ModeSticky | 0o777},
				{Path: "suid", Mode: fs.ModeSetuid | fs.ModeSetgid | 0o755},
			}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := mustMarshal(t, tt.m)
			got, err := Unmarshal(b)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.m) {
				t.Fatalf("round trip changed the manifest:\n got %+v\nwant %+v", got.Files, tt.m.Files)
			}
			if b2 := mustMarshal(t, got); !bytes.Equal(b, b2) {
				t.Fatal("re-encoding gives other bytes")
			}
		})
	}
}

func TestRoundTripCompact(t *testing.T) {
	m := vmwareManifest(65536)
	b := mustMarshal(t, m)
	s := m.Stats()
	data := s.Blocks - s.HoleBlocks
	// Every non-hole ID costs 32 bytes; holes and everything else must
	// fit in a small fraction more.
	if min, max := 32*data, 32*data+data/8+4096; len(b) < min || len(b) > max {
		t.Fatalf("encoding is %d bytes for %d data blocks and %d holes, want %d to %d", len(b), data, s.HoleBlocks, min, max)
	}
	t.Logf("%d blocks (%d holes): %d bytes, %.2f bytes per data block", s.Blocks, s.HoleBlocks, len(b), float64(len(b))/float64(data))
}

func TestDeterministic(t *testing.T) {
	want := mustMarshal(t, vmwareManifest(1000))
	for i := 0; i < 3; i++ {
		if got := mustMarshal(t, vmwareManifest(1000)); !bytes.Equal(got, want) {
			t.Fatal("two encodings of the same manifest differ")
		}
	}
	// The same instants in another zone, with a monotonic reading, encode
	// the same: only the instant is kept.
	m := vmwareManifest(1000)
	zone := time.FixedZone("CET", 3600)
	m.Created = m.Created.In(zone)
	for i := range m.Files {
		m.Files[i].MTime = m.Files[i].MTime.In(zone)
	}
	now := time.Now()
	if got := mustMarshal(t, m); !bytes.Equal(got, want) {
		t.Fatal("a time zone changes the encoding")
	}
	a := &Manifest{Kind: KindTemplate, Name: "n", BlockSize: 4096, Created: now}
	b := &Manifest{Kind: KindTemplate, Name: "n", BlockSize: 4096, Created: now.Round(0)}
	if !bytes.Equal(mustMarshal(t, a), mustMarshal(t, b)) {
		t.Fatal("a monotonic reading changes the encoding")
	}
}

func TestLarge(t *testing.T) {
	const n = 330_000 // a 20 GiB disk in 64 KiB blocks
	m := bigManifest(n)
	b := mustMarshal(t, m)
	if len(b) < 32*n || len(b) > 32*n+128 {
		t.Fatalf("%d data blocks encode to %d bytes, want about %d", n, len(b), 32*n)
	}
	got, err := Unmarshal(b)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, m) {
		t.Fatal("round trip changed the manifest")
	}
	t.Logf("%d blocks: %d bytes (%.3f bytes per block)", n, len(b), float64(len(b))/n)
}

// enc builds raw encodings for the decoder tests.
type enc []byte

func (e enc) uv(vs ...uint64) enc {
	for _, v := range vs {
		e = binary.AppendUvarint(e, v)
	}
	return e
}
func (e enc) str(s string) enc        { return append(e.uv(uint64(len(s))), s...) }
func (e enc) raw(b ...byte) enc       { return append(e, b...) }
func (e enc) id(id blockstore.ID) enc { return append(e, id[:]...) }

// header is a valid manifest header (kind, name "n", version 1, parent 0,
// zero time, 4 KiB blocks) up to the file count.
func header() enc {
	return enc(magic).raw(formatVersion).uv(uint64(KindTemplate)).str("n").uv(1, 0, 0, 4096)
}

// regular starts a regular file entry of size bytes, up to its blocks.
func (e enc) regular(path string, size uint64) enc {
	return e.str(path).uv(0o644, size, 0)
}

func TestUnmarshalErrors(t *testing.T) {
	id := testID(1)
	tests := []struct {
		name string
		data []byte
		want string // in the error message
	}{
		{"empty", nil, "magic (byte 0): truncated"},
		{"bad magic", enc("DVFSMAX").raw(1, 1), "not a dvfs manifest"},
		{"signed envelope", Sign(mustMarshal(t, smallManifest()), testKey), "not a dvfs manifest"},
		{"future version", enc(magic).raw(2, 1), "format version 2"},
		{"unknown kind", header()[:8].uv(9).str("n").uv(1, 0, 0, 4096, 0), "unknown kind 9"},
		{"kind overflow", header()[:8].uv(300), "kind (byte 8): 300 is more than 255"},
		{"name too long", header()[:9].str(strings.Repeat("a", 200)), "name (byte 9): 200 is more than 128"},
		{"name truncated", header()[:9].uv(5).raw('a', 'b'), "name (byte 9): truncated: length 5, 2 bytes left"},
		{"bad name", enc(magic).raw(1).uv(1).str("a@b").uv(1, 0, 0, 4096, 0), "holds '@'"},
		{"block size not a power of two", enc(magic).raw(1).uv(1).str("n").uv(1, 0, 0, 5000), "block size (byte 14): block size 5000"},
		{"block size too big", enc(magic).raw(1).uv(1).str("n").uv(1, 0, 0, 8<<20), "is more than 4194304"},
		{"varint overflow", header()[:12].raw(0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 1), "parent (byte 12): varint overflows"},
		{"varint not shortest", header()[:11].raw(0x81, 0x00), "version (byte 11): varint not in its shortest form"},
		{"file count beyond MaxFiles", header().uv(MaxFiles + 1), "file count (byte 16): 1048577 is more than 1048576"},
		{"file count beyond input", header().uv(1000).raw(make([]byte, 100)...), "file count (byte 16): truncated: 1000 files cannot fit in 100 bytes"},
		{"path truncated", header().uv(1).uv(50).raw(make([]byte, 10)...), "file 0 path (byte 17): truncated: length 50"},
		{"path too long", header().uv(1).uv(MaxPathLen + 1).raw(make([]byte, 10)...), "file 0 path (byte 17): 4097 is more than 4096"},
		{"unknown mode type", header().uv(1).str("a").uv(3<<12, 0, 0), "file 0 mode (byte 19): unknown mode 030000"},
		{"size beyond int64", header().uv(1).str("a").uv(0o644).uv(math.MaxUint64), "file 0 size (byte 21): 18446744073709551615 is more than 9223372036854775807"},
		{"blocks beyond MaxBlocks", header().uv(1).regular("a", 1<<50), "file 0 blocks (byte 30): 1125899906842624 bytes need 274877906944 blocks"},
		{"blocks missing", header().uv(1).regular("a", 4097).uv(1 << 1).id(id), "file 0 blocks (byte 57): truncated"},
		{"ID run truncated", header().uv(1).regular("a", 4096).uv(1<<1).raw(1, 2, 3), "file 0 blocks (byte 24): truncated: run of 1 IDs, 3 bytes left"},
		{"run overruns the file", header().uv(1).regular("a", 4096).uv(2<<1 | 1), "run of 2 blocks after 0 overruns the file's 1"},
		{"empty run", header().uv(1).regular("a", 4096).uv(0<<1|1, 1<<1|1), "file 0 blocks (byte 24): empty run"},
		{"adjacent hole runs", header().uv(1).regular("a", 8192).uv(1<<1|1, 1<<1|1), "file 0 blocks (byte 25): two runs of the same kind"},
		{"adjacent ID runs", header().uv(1).regular("a", 8192).uv(1 << 1).id(id).uv(1 << 1).id(id), "two runs of the same kind"},
		{"hole in an ID run", header().uv(1).regular("a", 8192).uv(2 << 1).id(id).id(blockstore.Hole), "file 0 blocks (byte 57): hole in a run of IDs"},
		{"symlink target truncated", header().uv(1).str("a").uv(2<<12|0o777, 0, 0).uv(9).raw('x'), "file 0 target (byte 23): truncated"},
		{"trailing bytes", header().uv(0).raw(0), "end (byte 17): 1 trailing bytes"},
		{"invalid path", header().uv(1).regular("../a", 0), `file 0 "../a": path has a ".." element`},
		{"unsorted", header().uv(2).regular("b", 0).regular("a", 0), `file 1 "a": not after file 0 "b"`},
		{"symlink without target", header().uv(1).str("a").uv(2<<12|0o777, 0, 0).str(""), "symlink without a target"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := Unmarshal(tt.data)
			if err == nil {
				t.Fatalf("Unmarshal succeeded: %+v", m)
			}
			if !errors.Is(err, ErrMalformed) {
				t.Errorf("error %q does not wrap ErrMalformed", err)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q does not say %q", err, tt.want)
			}
		})
	}
}

// The hand-built encodings above are only meaningful if the same builder
// makes a valid one.
func TestUnmarshalBuilder(t *testing.T) {
	id := testID(1)
	data := header().uv(2).
		regular("a", 3*4096).uv(1<<1).id(id).uv(1<<1|1).uv(1<<1).id(id).
		str("l").uv(2<<12|0o777, 0, 0).str("a")
	m, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	if got := m.Files[0].Blocks; !reflect.DeepEqual(got, []blockstore.ID{id, {}, id}) {
		t.Fatalf("blocks %v", got)
	}
	if !bytes.Equal(mustMarshal(t, m), data) {
		t.Fatal("re-encoding differs")
	}
}

// Every prefix of an encoding is an error, never a manifest or a panic.
func TestUnmarshalTruncated(t *testing.T) {
	b := mustMarshal(t, smallManifest())
	for i := range len(b) {
		if m, err := Unmarshal(b[:i]); err == nil || !errors.Is(err, ErrMalformed) {
			t.Fatalf("Unmarshal of the first %d of %d bytes: %v, %v", i, len(b), m, err)
		}
	}
}

func TestMarshalValidates(t *testing.T) {
	m := smallManifest()
	m.Files[0].Path = "/d"
	if _, err := m.MarshalBinary(); !errors.Is(err, ErrInvalid) {
		t.Fatalf("MarshalBinary of an invalid manifest: %v, want ErrInvalid", err)
	}
}

func TestUnmarshalBinary(t *testing.T) {
	var m Manifest
	if err := m.UnmarshalBinary(mustMarshal(t, smallManifest())); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(&m, smallManifest()) {
		t.Fatal("UnmarshalBinary differs from the original")
	}
}

func BenchmarkMarshal(b *testing.B) {
	m := bigManifest(330_000)
	b.SetBytes(int64(len(mustMarshal(b, m))))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := m.MarshalBinary(); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkUnmarshal(b *testing.B) {
	data := mustMarshal(b, bigManifest(330_000))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Unmarshal(data); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkOpen(b *testing.B) {
	signed := Sign(mustMarshal(b, bigManifest(330_000)), testKey)
	pub := testPub()
	b.SetBytes(int64(len(signed)))
	b.ReportAllocs()
	for b.Loop() {
		if _, _, err := Open(signed, pub); err != nil {
			b.Fatal(err)
		}
	}
}
