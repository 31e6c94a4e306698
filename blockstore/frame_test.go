package blockstore

import (
	"bytes"
	"encoding/binary"
	"errors"
	"math/rand/v2"
	"runtime"
	"slices"
	"testing"

	"github.com/klauspost/compress/zstd"
)

// randomBytes returns n incompressible bytes from seed.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 1))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// compressibleBytes returns n bytes that zstd shrinks severalfold: runs
// copied from a small random dictionary.
func compressibleBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, 2))
	dict := randomBytes(seed, 1024)
	b := make([]byte, 0, n+64)
	for len(b) < n {
		off := r.IntN(len(dict) - 64)
		b = append(b, dict[off:off+8+r.IntN(56)]...)
		b = append(b, byte(r.Uint32()))
	}
	return b[:n]
}

func TestEncodeOpen(t *testing.T) {
	tests := []struct {
		name  string
		plain []byte
		codec byte
	}{
		{"empty", []byte{}, codecRaw},
		{"one byte", []byte{7}, codecRaw},
		{"short random", randomBytes(1, 1000), codecRaw},
		{"short compressible", compressibleBytes(2, 5000), codecZstd},
		{"random", randomBytes(3, DefaultBlockSize), codecRaw},
		{"compressible", compressibleBytes(4, DefaultBlockSize), codecZstd},
		{"zeros", make([]byte, DefaultBlockSize), codecZstd},
		{"max random", randomBytes(5, MaxBlockSize), codecRaw},
		{"max compressible", compressibleBytes(6, MaxBlockSize), codecZstd},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			id := Sum(tc.plain)
			frame := Encode([]byte("head"), tc.plain)
			if !bytes.HasPrefix(frame, []byte("head")) {
				t.Fatal("Encode lost dst")
			}
			frame = frame[4:]
			if frame[0] != tc.codec {
				t.Errorf("codec %d, want %d (frame of %d bytes)", frame[0], tc.codec, len(frame))
			}
			if tc.codec == codecZstd && len(frame) > len(tc.plain)-len(tc.plain)/16 {
				t.Errorf("zstd frame of %d bytes saves less than 1/16 of %d", len(frame), len(tc.plain))
			}
			if n, err := FrameLen(frame); err != nil || n != len(tc.plain) {
				t.Errorf("FrameLen = %d, %v; want %d", n, err, len(tc.plain))
			}
			// Open appends: with no dst, with a prefix, with exactly room
			// for the block, and with room to spare.
			exact := append(make([]byte, 0, 6+len(tc.plain)), "prefix"...)
			spare := append(make([]byte, 0, 6+len(tc.plain)+100), "prefix"...)
			for _, dst := range [][]byte{nil, []byte("prefix"), exact, spare} {
				start := len(dst)
				out, err := Open(id, frame, dst)
				if err != nil {
					t.Fatalf("Open with %d bytes of dst: %v", start, err)
				}
				if !bytes.Equal(out[:start], dst[:start]) || !bytes.Equal(out[start:], tc.plain) {
					t.Fatalf("Open with %d bytes of dst: wrong bytes", start)
				}
			}
			if err := Verify(id, frame); err != nil {
				t.Errorf("Verify: %v", err)
			}
		})
	}
}

func TestEncodeTooBig(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("Encode of MaxBlockSize+1 bytes did not panic")
		}
	}()
	Encode(nil, make([]byte, MaxBlockSize+1))
}

// TestOpenTampered flips bits, truncates and extends frames of both codecs:
// Open must report ErrCorrupt and hand back dst untouched, or (for a bit
// that does not matter, as some in a zstd frame header) return exactly the
// block. Never other bytes.
func TestOpenTampered(t *testing.T) {
	for _, tc := range []struct {
		name  string
		plain []byte
	}{
		{"raw", randomBytes(7, DefaultBlockSize)},
		{"zstd", compressibleBytes(8, DefaultBlockSize)},
		{"short raw", randomBytes(9, 100)},
		{"short zstd", compressibleBytes(10, 600)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := Sum(tc.plain)
			frame := Encode(nil, tc.plain)
			check := func(what string, id ID, f []byte) {
				t.Helper()
				dst := []byte("prefix")
				out, err := Open(id, f, dst)
				if err == nil && id == Sum(tc.plain) && bytes.Equal(out[len(dst):], tc.plain) {
					return // a harmless bit: the very block came out
				}
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s: err = %v, want ErrCorrupt", what, err)
				}
				if string(out) != "prefix" {
					t.Fatalf("%s: Open returned %d bytes along with its error", what, len(out))
				}
				if err := Verify(id, f); !errors.Is(err, ErrCorrupt) {
					t.Fatalf("%s: Verify err = %v, want ErrCorrupt", what, err)
				}
			}
			// Every byte of short frames, a sample of long ones.
			step := max(1, len(frame)/300)
			for i := 0; i < len(frame); i += step {
				for _, bit := range []byte{0x01, 0x80} {
					f := slices.Clone(frame)
					f[i] ^= bit
					check("bit flipped", id, f)
				}
			}
			for n := 0; n < len(frame); n += step {
				check("truncated", id, frame[:n])
			}
			check("extended", id, append(slices.Clone(frame), 0))
			other := id
			other[0] ^= 1
			check("wrong id", other, frame)
			check("hole id", Hole, frame)
		})
	}
}

func TestDecodeMalformed(t *testing.T) {
	e, _ := codecs()
	zstdOf := func(p []byte) []byte { return e.EncodeAll(p, nil) }
	hdr := func(codec byte, n uint64) []byte {
		return binary.AppendUvarint([]byte{codec}, n)
	}
	hundred := compressibleBytes(11, 100)
	tests := []struct {
		name  string
		frame []byte
	}{
		{"nil", nil},
		{"codec only", []byte{codecRaw}},
		{"unknown codec", append(hdr(3, 1), 0)},
		{"deferred payload short", append(hdr(codecDeferred, 10), 1, 2, 3)},
		{"codec 0xff", append(hdr(0xff, 1), 0)},
		{"length overflows", []byte{codecRaw, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}},
		{"length unterminated", []byte{codecRaw, 0x80, 0x80}},
		{"length above MaxBlockSize", append(hdr(codecRaw, MaxBlockSize+1), 0)},
		{"raw payload short", append(hdr(codecRaw, 10), 1, 2, 3)},
		{"raw payload long", append(hdr(codecRaw, 1), 1, 2)},
		{"zstd garbage", append(hdr(codecZstd, 10), "not a zstd frame"...)},
		{"zstd empty payload", hdr(codecZstd, 10)},
		{"zstd longer than header", append(hdr(codecZstd, 10), zstdOf(hundred)...)},
		{"zstd shorter than header", append(hdr(codecZstd, 101), zstdOf(hundred)...)},
		{"zstd two frames", append(hdr(codecZstd, 100), append(zstdOf(hundred), zstdOf(hundred)...)...)},
		{"zstd bomb", append(hdr(codecZstd, 1), zstdOf(make([]byte, MaxBlockSize))...)},
		{"zstd truncated", append(hdr(codecZstd, 100), zstdOf(hundred)[:10]...)},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, err := Decode([]byte("prefix"), tc.frame)
			if !errors.Is(err, ErrCorrupt) {
				t.Errorf("Decode: err = %v, want ErrCorrupt", err)
			}
			if string(out) != "prefix" {
				t.Errorf("Decode returned %d bytes along with its error", len(out))
			}
		})
	}
}

// TestDecodeUncompressedFrameOfOtherEncoder checks that frames are read by
// their header, not by how this Encode would have made them: a raw frame of
// compressible bytes, and a zstd frame with a checksum, decode fine.
func TestDecodeOtherEncoders(t *testing.T) {
	plain := compressibleBytes(12, 5000)
	raw := append(binary.AppendUvarint([]byte{codecRaw}, uint64(len(plain))), plain...)
	enc, err := zstd.NewWriter(nil, zstd.WithEncoderCRC(true), zstd.WithEncoderLevel(zstd.SpeedBestCompression))
	if err != nil {
		t.Fatal(err)
	}
	z := append(binary.AppendUvarint([]byte{codecZstd}, uint64(len(plain))), enc.EncodeAll(plain, nil)...)
	for name, f := range map[string][]byte{"raw": raw, "zstd with crc": z} {
		if out, err := Open(Sum(plain), f, nil); err != nil || !bytes.Equal(out, plain) {
			t.Errorf("%s: Open = %d bytes, %v", name, len(out), err)
		}
	}
}

func BenchmarkEncode(b *testing.B) {
	for _, data := range benchData() {
		b.Run(data.name, func(b *testing.B) {
			b.SetBytes(int64(len(data.plain)))
			var frame []byte
			for b.Loop() {
				frame = Encode(frame[:0], data.plain)
			}
			b.ReportMetric(float64(len(frame))/float64(len(data.plain)), "ratio")
		})
		// Callers on every core at once, as a publish's uploaders are.
		b.Run(data.name+"/parallel", func(b *testing.B) {
			b.SetBytes(int64(len(data.plain)))
			b.RunParallel(func(pb *testing.PB) {
				var frame []byte
				for pb.Next() {
					frame = Encode(frame[:0], data.plain)
				}
			})
		})
	}
}

func BenchmarkOpen(b *testing.B) {
	for _, data := range benchData() {
		b.Run(data.name, func(b *testing.B) {
			frame := Encode(nil, data.plain)
			id := Sum(data.plain)
			b.SetBytes(int64(len(data.plain)))
			var out []byte
			for b.Loop() {
				var err error
				if out, err = Open(id, frame, out[:0]); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchData() []struct {
	name  string
	plain []byte
} {
	return []struct {
		name  string
		plain []byte
	}{
		{"random", randomBytes(20, DefaultBlockSize)},
		{"compressible", compressibleBytes(21, DefaultBlockSize)},
	}
}

// TestEncodeDeferred checks the uncompressed frame a fast sender makes:
// it opens and verifies like a raw one, says it is deferred, and a
// tampered one is refused.
func TestEncodeDeferred(t *testing.T) {
	for _, plain := range [][]byte{{}, compressibleBytes(7, DefaultBlockSize), randomBytes(8, MaxBlockSize)} {
		id := Sum(plain)
		frame := EncodeDeferred([]byte("head"), plain)[4:]
		if !Deferred(frame) || Deferred(Encode(nil, plain)) {
			t.Fatalf("Deferred: wrong for a frame of %d bytes", len(plain))
		}
		out, err := Open(id, frame, []byte("prefix"))
		if err != nil || string(out[:6]) != "prefix" || !bytes.Equal(out[6:], plain) {
			t.Fatalf("Open of a deferred frame of %d bytes: %v", len(plain), err)
		}
		if err := Verify(id, frame); err != nil {
			t.Errorf("Verify: %v", err)
		}
		hdr, payload, err := SplitFrame(frame)
		if err != nil || !bytes.Equal(payload, plain) || !Deferred(hdr) {
			t.Fatalf("SplitFrame: %v", err)
		}
		if raw, n, err := RawHeader(hdr); !raw || n != len(plain) || err != nil {
			t.Errorf("RawHeader = %v, %d, %v; want a raw header of %d bytes", raw, n, err, len(plain))
		}
		if len(plain) > 0 {
			bad := bytes.Clone(frame)
			bad[len(bad)-1] ^= 1
			if err := Verify(id, bad); !errors.Is(err, ErrCorrupt) {
				t.Errorf("Verify of a tampered deferred frame: %v", err)
			}
		}
	}
}

func TestRawHeaderLen(t *testing.T) {
	for _, n := range []int{1, 127, 128, 3000, 16383, 16384, 65536, MaxBlockSize} {
		frame := EncodeDeferred(nil, make([]byte, n))
		hdr, _, err := SplitFrame(frame)
		if err != nil {
			t.Fatal(err)
		}
		if got := RawHeaderLen(len(frame)); got != len(hdr) {
			t.Errorf("RawHeaderLen(%d) = %d, want %d (plain %d)", len(frame), got, len(hdr), n)
		}
	}
	if got := RawHeaderLen(1); got != 0 {
		t.Errorf("RawHeaderLen(1) = %d, want 0", got)
	}
}

// Decoding many blocks back to back into one buffer (as badgerstore's
// writePayloads does) grows it as append does: the bytes allocated stay a
// small multiple of the bytes decoded, where growing it by one block each
// time copied it all again per block (about 2 GiB for these 16 MiB).
func TestDecodeBackToBackAmortized(t *testing.T) {
	const blocks, size = 256, 64 << 10
	r := rand.New(rand.NewPCG(1, 1))
	var frames [][]byte
	for range blocks {
		plain := make([]byte, size)
		for i := 0; i < size; i += 64 {
			plain[i] = byte(r.Uint32()) // compressible: a zstd frame
		}
		frames = append(frames, Encode(nil, plain))
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	var dst []byte
	for _, f := range frames {
		var err error
		if dst, err = Decode(dst, f); err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if len(dst) != blocks*size {
		t.Fatalf("decoded %d bytes", len(dst))
	}
	if alloc := after.TotalAlloc - before.TotalAlloc; alloc > 8*blocks*size {
		t.Fatalf("decoding %d bytes back to back allocated %d", blocks*size, alloc)
	}
}
