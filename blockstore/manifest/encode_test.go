package manifest

import (
	"bytes"
	"encoding/binary"
	"errors"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"reflect"
	"strconv"
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
		{"format 2: every kind of entry, owners", everyKindManifest()},
		{"format 2: owners only, all root", func() *Manifest { m := smallManifest(); m.Owners = true; return m }()},
		{"format 2: an atime only", func() *Manifest { m := smallManifest(); m.Files[1].ATime = t0.Add(time.Second); return m }()},
		{"format 2: a hard link only", func() *Manifest {
			m := smallManifest()
			m.Files = append(m.Files, hardLink("d/m", m.Files[1]))
			return m
		}()},
		{"format 2: a named pipe only", &Manifest{Kind: KindTemplate, Name: "p", BlockSize: 4096,
			Files: []File{{Path: "p", Mode: fs.ModeNamedPipe}}}},
		{"format 2: a whiteout (device 0:0) only", &Manifest{Kind: KindTemplate, Name: "w", BlockSize: 4096,
			Files: []File{{Path: "w", Mode: fs.ModeDevice | fs.ModeCharDevice}}}},
		{"format 2: extremes", &Manifest{Kind: KindTemplate, Name: "x", BlockSize: 4096, Owners: true,
			Files: []File{
				{Path: "b", Mode: fs.ModeDevice | 0o777, MTime: minTime.UTC(), ATime: maxTime.UTC(), UID: math.MaxUint32, GID: math.MaxUint32, Rdev: math.MaxUint64},
				hardLink("c", File{Path: "b", Mode: fs.ModeDevice | 0o777, MTime: minTime.UTC(), ATime: maxTime.UTC(), UID: math.MaxUint32, GID: math.MaxUint32, Rdev: math.MaxUint64}),
				{Path: "e", Mode: 0o644, ATime: time.Unix(0, -1).UTC()},
				hardLink("f", File{Path: "e", Mode: 0o644, ATime: time.Unix(0, -1).UTC()}),
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

// MarshalBinary writes format 1 unless the manifest needs format 2.
func TestFormatVersion(t *testing.T) {
	tests := []struct {
		name   string
		change func(m *Manifest)
		want   byte
	}{
		{"format 1", func(m *Manifest) {}, formatV1},
		{"zero owners, atimes and device numbers", func(m *Manifest) {
			m.Owners = false
			m.Files[0].UID, m.Files[0].ATime, m.Files[1].Rdev = 0, time.Time{}, 0
		}, formatV1},
		{"owners", func(m *Manifest) { m.Owners = true }, formatV2},
		{"owners, all root", func(m *Manifest) { m.Owners = true }, formatV2},
		{"atime", func(m *Manifest) { m.Files[2].ATime = t0 }, formatV2},
		{"atime at the epoch", func(m *Manifest) { m.Files[0].ATime = time.Unix(0, 0) }, formatV2},
		{"named pipe", func(m *Manifest) { m.Files[2] = File{Path: "d/l", Mode: fs.ModeNamedPipe | 0o600} }, formatV2},
		{"socket", func(m *Manifest) { m.Files[2] = File{Path: "d/l", Mode: fs.ModeSocket | 0o600} }, formatV2},
		{"character device", func(m *Manifest) { m.Files[2] = File{Path: "d/l", Mode: fs.ModeDevice | fs.ModeCharDevice} }, formatV2},
		{"block device", func(m *Manifest) { m.Files[2] = File{Path: "d/l", Mode: fs.ModeDevice, Rdev: 1} }, formatV2},
		{"hard link", func(m *Manifest) { m.Files[2] = hardLink("d/l", m.Files[1]) }, formatV2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := smallManifest()
			tt.change(m)
			if got := mustMarshal(t, m)[len(magic)]; got != tt.want {
				t.Fatalf("format version %d, want %d", got, tt.want)
			}
		})
	}
}

// A format-1 manifest decodes with none of format 2's fields and encodes
// back to the same bytes.
func TestFormat1(t *testing.T) {
	for _, m := range []*Manifest{smallManifest(), vmwareManifest(1000), bigManifest(10)} {
		b := mustMarshal(t, m)
		if b[len(magic)] != formatV1 {
			t.Fatalf("%s: format version %d, want 1", m.Name, b[len(magic)])
		}
		got, err := Unmarshal(b)
		if err != nil {
			t.Fatal(err)
		}
		if got.Owners {
			t.Errorf("%s: a format-1 manifest decodes with Owners", m.Name)
		}
		for _, f := range got.Files {
			if !f.ATime.IsZero() || f.UID != 0 || f.GID != 0 || f.Rdev != 0 || f.Link != "" {
				t.Errorf("%s: a format-1 entry decodes with format-2 fields: %+v", m.Name, f)
			}
		}
		if b2 := mustMarshal(t, got); !bytes.Equal(b, b2) {
			t.Errorf("%s: re-encoding a format-1 manifest gives other bytes", m.Name)
		}
	}
}

// The committed corpus files are golden encodings: each decodes (or opens)
// and encodes (or signs) back to the same bytes. The seeds made before
// format 2 (every "seed-" file not named "seed-v2-") are format 1.
func TestGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "fuzz", "Fuzz*", "seed-*"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no golden files (%v)", err)
	}
	for _, path := range files {
		t.Run(path, func(t *testing.T) {
			text, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}
			data := corpusBytes(t, text)
			body := data
			if filepath.Base(filepath.Dir(path)) == "FuzzOpen" {
				var m *Manifest
				if m, body, err = Open(data, testPub()); err != nil {
					t.Fatal(err)
				}
				if !bytes.Equal(Sign(mustMarshal(t, m), testKey), data) {
					t.Fatal("signing the opened manifest gives other bytes")
				}
			}
			m, err := Unmarshal(body)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(mustMarshal(t, m), body) {
				t.Fatal("re-encoding gives other bytes")
			}
			want := byte(formatV1)
			if strings.HasPrefix(filepath.Base(path), "seed-v2-") {
				want = formatV2
			}
			if body[len(magic)] != want {
				t.Fatalf("format version %d, want %d", body[len(magic)], want)
			}
		})
	}
}

// corpusBytes parses a fuzz corpus file of one []byte value.
func corpusBytes(t *testing.T, text []byte) []byte {
	t.Helper()
	header, value, ok := strings.Cut(strings.TrimSpace(string(text)), "\n")
	if !ok || header != "go test fuzz v1" || !strings.HasPrefix(value, "[]byte(") || !strings.HasSuffix(value, ")") {
		t.Fatalf("not a corpus file of one []byte: %.80q", text)
	}
	s, err := strconv.Unquote(strings.TrimSuffix(strings.TrimPrefix(value, "[]byte("), ")"))
	if err != nil {
		t.Fatal(err)
	}
	return []byte(s)
}

// After Unmarshal a hard link shares its file's Blocks.
func TestHardLinkSharesBlocks(t *testing.T) {
	m, err := Unmarshal(mustMarshal(t, everyKindManifest()))
	if err != nil {
		t.Fatal(err)
	}
	disk, _ := m.Lookup("home/alice/disk.img")
	for _, p := range []string{"home/alice/disk.img.bak", "tmp/x"} {
		f, _ := m.Lookup(p)
		if f.Link != disk.Path || len(f.Blocks) != 3 || &f.Blocks[0] != &disk.Blocks[0] {
			t.Errorf("%s: link %q, blocks %p; want a link of %q sharing %p", p, f.Link, f.Blocks, disk.Path, disk.Blocks)
		}
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
	// A hard link whose times are its file's in another zone is valid and
	// encodes as one in the same zone.
	m2 := everyKindManifest()
	want2 := mustMarshal(t, m2)
	for i := range m2.Files {
		if m2.Files[i].Link != "" {
			m2.Files[i].MTime, m2.Files[i].ATime = m2.Files[i].MTime.In(zone), m2.Files[i].ATime.In(zone)
		}
	}
	if got := mustMarshal(t, m2); !bytes.Equal(got, want2) {
		t.Fatal("a hard link's time zone changes the encoding")
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
	return enc(magic).raw(formatV1).uv(uint64(KindTemplate)).str("n").uv(1, 0, 0, 4096)
}

// regular starts a regular file entry of size bytes, up to its blocks.
func (e enc) regular(path string, size uint64) enc {
	return e.str(path).uv(0o644, size, 0)
}

// header2 is header in format 2 with the given flags, up to the file
// count.
func header2(flags uint64) enc {
	return enc(magic).raw(formatV2).uv(uint64(KindTemplate)).str("n").uv(1, 0, 0, 4096, flags)
}

// entry2 starts a format-2 entry of type typ and permissions 0644, with
// zero size, mtime and atime, in a manifest without owners, up to its rdev,
// target or blocks.
func (e enc) entry2(path string, typ uint64) enc {
	return e.str(path).uv(typ<<12|0o644, 0, 0, 0)
}

// link2 is a format-2 hard link entry.
func (e enc) link2(path, to string) enc {
	return e.str(path).uv(typeLink << 12).str(to)
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
		{"future version", enc(magic).raw(3, 1), "magic (byte 0): format version 3, this dvfs reads versions 1 and 2"},
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
		{"format 1 hard link", header().uv(2).regular("a", 0).link2("b", "a"), "file 1 mode (byte 25): unknown mode 070000"},
		{"format 1 block device", header().uv(1).str("a").uv(6<<12|0o644, 0, 0, 0), "file 0 mode (byte 19): unknown mode 060644"},

		// Format 2. In header2 the flags are byte 16, the file count byte
		// 17, and the first file starts at byte 18.
		{"v2 flags truncated", header2(0)[:16], "flags (byte 16): truncated"},
		{"v2 flags not shortest", header2(0)[:16].raw(0x81, 0x00), "flags (byte 16): varint not in its shortest form"},
		{"v2 unknown flag", header2(2).uv(0), "flags (byte 16): unknown flags 0x2"},
		{"v2 unknown flags beside Owners", header2(1 | 1<<40).uv(0), "flags (byte 16): unknown flags 0x10000000000"},
		{"v2 without files", header2(0).uv(0), "format version (byte 7): format 2 for a manifest that format 1 holds"},
		{"v2 of a format-1 manifest", header2(0).uv(2).entry2("a", typeRegular).str("b").uv(2<<12|0o777, 0, 0, 0).str("a"),
			"format version (byte 7): format 2 for a manifest that format 1 holds (nothing in it needs format 2)"},
		{"v2 unknown mode type", header2(0).uv(1).entry2("a", 8), "file 0 mode (byte 20): unknown mode 0100644"},
		{"v2 atime truncated", header2(0).uv(1).str("a").uv(0o644, 0, 0), "file 0 atime (byte 24): truncated"},
		{"v2 atime not shortest", header2(0).uv(1).str("a").uv(0o644, 0, 0).raw(0x80, 0x00), "file 0 atime (byte 24): varint not in its shortest form"},
		{"v2 uid truncated", header2(flagOwners).uv(1).entry2("a", typeRegular), "file 0 uid (byte 25): truncated"},
		{"v2 uid beyond 32 bits", header2(flagOwners).uv(1).entry2("a", typeRegular).uv(1<<32, 0), "file 0 uid (byte 25): 4294967296 is more than 4294967295"},
		{"v2 gid beyond 32 bits", header2(flagOwners).uv(1).entry2("a", typeRegular).uv(0, 1<<32), "file 0 gid (byte 26): 4294967296 is more than 4294967295"},
		{"v2 rdev truncated", header2(0).uv(1).entry2("a", typeCharDevice), "file 0 rdev (byte 26): truncated"},
		{"v2 rdev overflow", header2(0).uv(1).entry2("a", typeBlockDevice).raw(bytes.Repeat([]byte{0xff}, 10)...).raw(1), "file 0 rdev (byte 26): varint overflows"},
		{"v2 named pipe with a size", header2(0).uv(1).str("p").uv(3<<12|0o644, 1, 0, 0), `file 0 "p": a named pipe has size 1`},
		{"v2 socket with a size", header2(0).uv(1).str("s").uv(4<<12|0o644, 4096, 0, 0), `file 0 "s": a socket has size 4096`},
		{"v2 device with a size", header2(0).uv(1).str("c").uv(5<<12|0o644, 1, 0, 0, 0), `a character device has size 1`},
		{"v2 hard link with permission bits", header2(0).uv(2).entry2("a", typeRegular).str("b").uv(typeLink<<12 | 0o644).str("a"),
			"file 1 mode (byte 27): hard link with permission bits 0644"},
		{"v2 hard link with setuid", header2(0).uv(2).entry2("a", typeRegular).str("b").uv(typeLink<<12 | 0o4000).str("a"),
			"hard link with permission bits 04000"},
		{"v2 hard link truncated", header2(0).uv(2).entry2("a", typeRegular).str("b").uv(typeLink << 12).uv(5).raw('a'), "file 1 link (byte 30): truncated: length 5, 1 bytes left"},
		{"v2 hard link path too long", header2(0).uv(2).entry2("a", typeRegular).str("b").uv(typeLink << 12).uv(MaxPathLen + 1), "file 1 link (byte 30): 4097 is more than 4096"},
		{"v2 hard link to nothing", header2(0).uv(1).link2("a", "b"), `file 0 link (byte 23): "b" is not listed before the link`},
		{"v2 hard link to itself", header2(0).uv(1).link2("a", "a"), `file 0 link (byte 23): "a" is not listed before the link`},
		{"v2 hard link to a later entry", header2(0).uv(2).link2("a", "b").entry2("b", typeRegular), `file 0 link (byte 23): "b" is not listed before the link`},
		{"v2 hard link to an unclean path", header2(0).uv(3).entry2("a", typeDir).entry2("a/b", typeRegular).link2("c", "a//b"), `file 2 link (byte 39): "a//b" is not listed before the link`},
		{"v2 hard link to a directory", header2(0).uv(2).entry2("a", typeDir).link2("b", "a"), `file 1 "b": link "a" is a directory`},
		{"v2 hard link to a hard link", header2(0).uv(3).entry2("a", typeRegular).link2("b", "a").link2("c", "b"), `file 2 "c": link "b" is itself a hard link (of "a")`},
		{"v2 hard link unsorted", header2(0).uv(3).entry2("a", typeRegular).entry2("c", typeRegular).link2("b", "a"), `file 2 "b": not after file 1 "c"`},
		{"v2 trailing bytes", header2(0).uv(1).entry2("p", typeNamedPipe).raw(0), "end (byte 25): 1 trailing bytes"},
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

// The format-2 builders above make what MarshalBinary writes.
func TestUnmarshalBuilderV2(t *testing.T) {
	id := testID(1)
	data := header2(flagOwners).uv(6).
		str("a").uv(0o4755, 4097, 0, 2, 1000, 100).uv(1<<1).id(id).uv(1<<1|1).
		str("c").uv(typeCharDevice<<12|0o666, 0, 0, 0, 0, 0, 1<<8|3).
		link2("d", "a").
		str("l").uv(typeSymlink<<12|0o777, 0, 0, 0, 0, 0).str("a").
		link2("m", "l").
		str("s").uv(typeSocket<<12|0o600, 0, 0, 0, 1, 2)
	m, err := Unmarshal(data)
	if err != nil {
		t.Fatal(err)
	}
	a := File{Path: "a", Mode: fs.ModeSetuid | 0o755, Size: 4097, ATime: time.Unix(0, -1).UTC(), UID: 1000, GID: 100, Blocks: []blockstore.ID{id, {}}}
	l := File{Path: "l", Mode: fs.ModeSymlink | 0o777, Target: "a"}
	want := &Manifest{Kind: KindTemplate, Name: "n", Version: 1, BlockSize: 4096, Owners: true, Files: []File{
		a,
		{Path: "c", Mode: fs.ModeDevice | fs.ModeCharDevice | 0o666, Rdev: mkdev(1, 3)},
		hardLink("d", a),
		l,
		hardLink("m", l),
		{Path: "s", Mode: fs.ModeSocket | 0o600, UID: 1, GID: 2},
	}}
	if !reflect.DeepEqual(m, want) {
		t.Fatalf("decoded\n %+v\nwant\n %+v", m, want)
	}
	if !bytes.Equal(mustMarshal(t, m), data) {
		t.Fatal("re-encoding differs")
	}
}

// Every prefix of an encoding is an error, never a manifest or a panic.
func TestUnmarshalTruncated(t *testing.T) {
	for _, m := range []*Manifest{smallManifest(), everyKindManifest()} {
		b := mustMarshal(t, m)
		for i := range len(b) {
			if m, err := Unmarshal(b[:i]); err == nil || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Unmarshal of the first %d of %d bytes: %v, %v", i, len(b), m, err)
			}
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
