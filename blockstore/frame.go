package blockstore

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"slices"
	"sync"

	"github.com/klauspost/compress/zstd"
)

// A frame is how a block is kept on disk and sent on the wire:
//
//	byte 0      codec: codecRaw, codecZstd or codecDeferred (or
//	            codecDelta, a frame of its own kind: see delta.go)
//	uvarint     plain length (at most MaxBlockSize)
//	rest        payload: the plain bytes, or one zstd frame of them
//
// The frame carries no checksum of its own: the block ID is the hash of the
// plain bytes, and Open checks it.
//
// codecDeferred is raw too, but says that compression has not been tried
// yet: a client on a link faster than it can compress sends such frames
// (EncodeDeferred), and the store compresses them later, when idle
// (badgerstore's CompressDeferred). A raw frame (codecRaw) is one that
// zstd did not shrink.
const (
	codecRaw      = 0
	codecZstd     = 1
	codecDeferred = 2
)

// maxFrameOverhead bounds the header: one codec byte and a uvarint.
const maxFrameOverhead = 1 + binary.MaxVarintLen32

var (
	encOnce sync.Once
	enc     *zstd.Encoder
	dec     *zstd.Decoder
)

func codecs() (*zstd.Encoder, *zstd.Decoder) {
	encOnce.Do(func() {
		var err error
		// SpeedFastest: on two cores CPU is the budget, and VM disks are
		// either very compressible (zeros, text) or not at all (media,
		// encrypted data), where a higher level buys little.
		// Concurrency: EncodeAll takes one of this many encoders for
		// each call, so 1 would make every caller in the process take
		// turns, compressing on one core while the other waits.
		enc, err = zstd.NewWriter(nil,
			zstd.WithEncoderLevel(zstd.SpeedFastest),
			zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)),
			zstd.WithZeroFrames(true),
			zstd.WithEncoderCRC(false))
		if err != nil {
			panic(err)
		}
		dec, err = zstd.NewReader(nil,
			zstd.WithDecoderConcurrency(0),
			zstd.WithDecoderMaxMemory(MaxBlockSize),
			zstd.WithDecodeAllCapLimit(true),
			zstd.IgnoreChecksum(true))
		if err != nil {
			panic(err)
		}
	})
	return enc, dec
}

// Encode appends the frame of the plain block to dst and returns it. The
// block is stored raw when zstd would not save at least 1/16 of it.
func Encode(dst, plain []byte) []byte {
	if len(plain) > MaxBlockSize {
		panic(fmt.Sprintf("blockstore: block of %d bytes exceeds MaxBlockSize", len(plain)))
	}
	e, _ := codecs()
	start := len(dst)
	dst = append(dst, codecZstd)
	dst = binary.AppendUvarint(dst, uint64(len(plain)))
	hdr := len(dst)
	dst = e.EncodeAll(plain, dst)
	if len(dst)-hdr < len(plain)-len(plain)/16 {
		return dst
	}
	dst = AppendRawHeader(dst[:start], len(plain))
	return append(dst, plain...)
}

// EncodeDeferred appends a frame of the plain block, uncompressed and marked
// for compression later, to dst. It costs a copy: for a sender whose link
// is faster than its compression (see Deferred).
func EncodeDeferred(dst, plain []byte) []byte {
	if len(plain) > MaxBlockSize {
		panic(fmt.Sprintf("blockstore: block of %d bytes exceeds MaxBlockSize", len(plain)))
	}
	return append(AppendDeferredHeader(dst, len(plain)), plain...)
}

// AppendDeferredHeader appends the header of EncodeDeferred's frame for n
// plain bytes: the frame is that header followed by the plain bytes, for a
// caller that sends the two from where they lie.
func AppendDeferredHeader(dst []byte, n int) []byte {
	dst = append(dst, codecDeferred)
	return binary.AppendUvarint(dst, uint64(n))
}

// Deferred reports whether a frame, or a frame header from SplitFrame, was
// made by EncodeDeferred: plain bytes whose compression is still to be
// tried. It checks only the codec byte.
func Deferred(frame []byte) bool { return len(frame) > 0 && frame[0] == codecDeferred }

// FrameLen returns the plain length a frame declares, checking only the
// header.
func FrameLen(frame []byte) (int, error) {
	_, n, _, err := parseHeader(frame)
	return n, err
}

func parseHeader(frame []byte) (codec byte, plainLen int, payload []byte, err error) {
	if IsDelta(frame) {
		return 0, 0, nil, fmt.Errorf("%w: %w", ErrCorrupt, ErrNeedsBase)
	}
	if len(frame) < 2 {
		return 0, 0, nil, fmt.Errorf("%w: frame of %d bytes is too short", ErrCorrupt, len(frame))
	}
	codec = frame[0]
	if codec != codecRaw && codec != codecZstd && codec != codecDeferred {
		return 0, 0, nil, fmt.Errorf("%w: unknown codec %d", ErrCorrupt, codec)
	}
	l, k := binary.Uvarint(frame[1:])
	if k <= 0 || l > MaxBlockSize {
		return 0, 0, nil, fmt.Errorf("%w: bad plain length in frame header", ErrCorrupt)
	}
	return codec, int(l), frame[1+k:], nil
}

// SplitFrame splits a frame into its header (at most MaxHeaderLen bytes)
// and its payload, checking only the header. A store may keep the two
// apart and join them again with OpenSplit or JoinFrame.
func SplitFrame(frame []byte) (header, payload []byte, err error) {
	_, _, payload, err = parseHeader(frame)
	if err != nil {
		return nil, nil, err
	}
	return frame[:len(frame)-len(payload)], payload, nil
}

// RawHeaderLen returns the header length of a raw or deferred frame that
// is frameLen bytes long, or 0 when no such frame is: the one h for which
// a header of h bytes declares frameLen-h plain bytes. A receiver that
// knows only a frame's length places it with this, so that the payload of
// a raw frame lands where an O_DIRECT write can take it (a wrong guess,
// for a zstd frame, costs only that copy).
func RawHeaderLen(frameLen int) int {
	var n [binary.MaxVarintLen64]byte
	for h := 2; h <= maxFrameOverhead && h < frameLen; h++ {
		if 1+binary.PutUvarint(n[:], uint64(frameLen-h)) == h {
			return h
		}
	}
	return 0
}

// MaxHeaderLen bounds the header of a frame.
const MaxHeaderLen = maxFrameOverhead

// RawHeader reports whether header (from SplitFrame) is that of a raw or
// deferred frame, whose payload is the plain bytes themselves, and the
// plain length it declares.
func RawHeader(header []byte) (raw bool, plainLen int, err error) {
	codec, n, payload, err := parseHeader(header)
	if err != nil {
		return false, 0, err
	}
	if len(payload) != 0 {
		return false, 0, fmt.Errorf("%w: %d bytes after the frame header", ErrCorrupt, len(payload))
	}
	return codec != codecZstd, n, nil
}

// CheckPlain checks that plain bytes hash to id.
func CheckPlain(id ID, plain []byte) error {
	if Sum(plain) != id {
		return fmt.Errorf("block %s: %w: content does not match its hash", id.Short(), ErrCorrupt)
	}
	return nil
}

// OpenSplit is Open for a frame kept as a header and a payload apart.
func OpenSplit(id ID, header, payload, dst []byte) ([]byte, error) {
	start := len(dst)
	out, err := DecodeSplit(dst, header, payload)
	if err != nil {
		return dst[:start], fmt.Errorf("block %s: %w", id.Short(), err)
	}
	if err := CheckPlain(id, out[start:]); err != nil {
		return dst[:start], err
	}
	return out, nil
}

// DecodeSplit is Decode for a frame kept as a header and a payload apart:
// it checks the framing but not the hash, for a store that checked the
// payload another way (a checksum kept since the block was verified).
func DecodeSplit(dst, header, payload []byte) ([]byte, error) {
	codec, n, rest, err := parseHeader(header)
	if err == nil && len(rest) != 0 {
		err = fmt.Errorf("%w: %d bytes after the frame header", ErrCorrupt, len(rest))
	}
	if err != nil {
		return dst, err
	}
	return decodeParts(dst, codec, n, payload)
}

// AppendRawHeader appends the header of a raw frame of n plain bytes: the
// frame is that header followed by the plain bytes.
func AppendRawHeader(dst []byte, n int) []byte {
	dst = append(dst, codecRaw)
	return binary.AppendUvarint(dst, uint64(n))
}

// Decode appends the plain bytes of frame to dst. It checks the framing but
// not the hash: use Open wherever the ID is known.
func Decode(dst, frame []byte) ([]byte, error) {
	codec, n, payload, err := parseHeader(frame)
	if err != nil {
		return dst, err
	}
	return decodeParts(dst, codec, n, payload)
}

// decodeParts appends the n plain bytes of a payload in codec to dst.
func decodeParts(dst []byte, codec byte, n int, payload []byte) ([]byte, error) {
	switch codec {
	case codecRaw, codecDeferred:
		if len(payload) != n {
			return dst, fmt.Errorf("%w: raw payload is %d bytes, header says %d", ErrCorrupt, len(payload), n)
		}
		return append(dst, payload...), nil
	default:
		_, d := codecs()
		start := len(dst)
		// Grown as append grows: callers decode many blocks back to back
		// into one buffer (badgerstore's writePayloads), and growing it
		// by exactly one block each time copied it all again per block
		// (3.6 of a cold-filling mount's 7 CPU seconds in the storm).
		dst = slices.Grow(dst, n)
		// Decode into an empty slice over dst's spare room, capped at n.
		// Empty: the zstd library counts bytes already in dst against its
		// MaxBlockSize limit, which refused blocks near MaxBlockSize behind
		// a prefix. Capped (WithDecodeAllCapLimit): a payload that decodes
		// to more than its header says fails there, without allocating.
		out, err := d.DecodeAll(payload, dst[start:start:start+n])
		if err != nil {
			return dst[:start], fmt.Errorf("%w: zstd: %v", ErrCorrupt, err)
		}
		if len(out) != n {
			return dst[:start], fmt.Errorf("%w: zstd payload decodes to %d bytes, header says %d", ErrCorrupt, len(out), n)
		}
		if n > 0 && &out[0] != &dst[start : start+1][0] {
			copy(dst[start:start+n], out) // the decoder used a buffer of its own
		}
		return dst[:start+n], nil
	}
}

// Open decodes frame, appending the plain bytes to dst, and checks that they
// hash to id. Every byte a store or a client hands out passes through here.
func Open(id ID, frame, dst []byte) ([]byte, error) {
	start := len(dst)
	out, err := Decode(dst, frame)
	if err != nil {
		return dst[:start], fmt.Errorf("block %s: %w", id.Short(), err)
	}
	if err := CheckPlain(id, out[start:]); err != nil {
		return dst[:start], err
	}
	return out, nil
}

// Verify checks that frame decodes to a block whose hash is id, without
// keeping the plain bytes. A raw (or deferred) frame is hashed where it
// lies: no copy.
func Verify(id ID, frame []byte) error {
	if codec, n, payload, err := parseHeader(frame); err == nil && codec != codecZstd {
		if len(payload) != n {
			return fmt.Errorf("block %s: %w: raw payload is %d bytes, header says %d", id.Short(), ErrCorrupt, len(payload), n)
		}
		return CheckPlain(id, payload)
	}
	bp := scratch.Get().(*[]byte)
	out, err := Open(id, frame, (*bp)[:0])
	*bp = out[:0]
	scratch.Put(bp)
	return err
}

var scratch = sync.Pool{New: func() any { b := make([]byte, 0, DefaultBlockSize); return &b }}
