package api

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"github.com/dvfs-project/dvfs/blockstore"
)

// A block batch is a sequence of records, each
//
//	32 bytes   block ID
//	uvarint    frame length (at most MaxFrameLen)
//	frame      the block's frame (see blockstore.Encode)
//
// ending at the end of the stream. Frames are checked by the receiver with
// blockstore.Open before use: the batch encoding carries no trust.
//
// A record whose ID is the hole's (all zeros: no block has it) is padding,
// and its "frame" is skipped: a sender of raw blocks pads so that each
// block's bytes start on a 4 KiB boundary of the body (AppendPadding),
// where the server's O_DIRECT write takes them without copying them into
// an aligned buffer first.

// MaxFrameLen bounds one frame in a batch: the largest block stored raw, plus
// its header.
const MaxFrameLen = blockstore.MaxBlockSize + 16

// AppendBlock appends one record to a batch.
func AppendBlock(dst []byte, id blockstore.ID, frame []byte) []byte {
	dst = append(dst, id[:]...)
	dst = binary.AppendUvarint(dst, uint64(len(frame)))
	return append(dst, frame...)
}

// AppendDeferredBlock appends a record of block id whose frame is the
// deferred frame of plain (blockstore.EncodeDeferred), copying plain once,
// straight into dst.
func AppendDeferredBlock(dst []byte, id blockstore.ID, plain []byte) []byte {
	return append(AppendDeferredBlockHeader(dst, id, len(plain)), plain...)
}

// MaxDeferredBlockHeader bounds AppendDeferredBlockHeader's output.
const MaxDeferredBlockHeader = blockstore.IDSize + 1 + 2*binary.MaxVarintLen64

// AppendDeferredBlockHeader appends what precedes the plain bytes in
// AppendDeferredBlock's record of a block of n bytes: a sender that writes
// the header and then the block from where it lies sends the same record
// without copying the block.
func AppendDeferredBlockHeader(dst []byte, id blockstore.ID, n int) []byte {
	var hdr [1 + binary.MaxVarintLen64]byte
	frameLen := len(blockstore.AppendDeferredHeader(hdr[:0], n)) + n
	dst = append(dst, id[:]...)
	dst = binary.AppendUvarint(dst, uint64(frameLen))
	return blockstore.AppendDeferredHeader(dst, n)
}

// PadAlign is the boundary AppendPadding aligns to: O_DIRECT's.
const PadAlign = 4096

// minPadding is the smallest padding record: an ID and a zero length;
// MaxPaddingHeader bounds AppendPaddingHeader's output, an ID and a
// length of at most two bytes.
const (
	minPadding       = blockstore.IDSize + 1
	MaxPaddingHeader = blockstore.IDSize + 2
)

// Padding returns the size of the padding record that, put at offset off
// of a batch, makes a record whose header is hdrLen bytes long (its ID,
// frame length and frame header) start its block's bytes on a PadAlign
// boundary; 0 when none is needed.
func Padding(off, hdrLen int) int {
	gap := (PadAlign - (off+hdrLen)%PadAlign) % PadAlign
	// No record is 161 bytes long: a length of 128 takes two bytes.
	if gap != 0 && (gap < minPadding || gap == minPadding+0x80) {
		gap += PadAlign
	}
	return gap
}

// AppendPaddingHeader appends the header of a padding record size bytes
// long in all (size from Padding, at least minPadding): its ID and length.
// The record's remaining bytes, which a receiver skips, follow it; the
// returned count is how many.
func AppendPaddingHeader(dst []byte, size int) ([]byte, int) {
	dst = append(dst, blockstore.Hole[:]...)
	// A length of n takes one uvarint byte below 128, two below 16384.
	n := size - minPadding
	if n >= 0x80 {
		n--
	}
	dst = binary.AppendUvarint(dst, uint64(n))
	return dst, n
}

// BatchReader reads the records of a batch from a stream.
type BatchReader struct {
	r   *bufio.Reader
	buf []byte
	n   int // records read
}

// NewBatchReader reads a batch from r.
func NewBatchReader(r io.Reader) *BatchReader {
	return &BatchReader{r: bufio.NewReaderSize(r, 256<<10)}
}

// Next returns the next record. The frame is valid until the next call.
// At the end of the batch it returns io.EOF; a record cut short or too long
// is an error wrapping ErrMalformed.
func (br *BatchReader) Next() (blockstore.ID, []byte, error) {
	for {
		id, frame, err := br.next()
		if err != nil || !id.IsHole() {
			return id, frame, err
		}
	}
}

// next reads the next record, padding included.
func (br *BatchReader) next() (blockstore.ID, []byte, error) {
	var id blockstore.ID
	if _, err := io.ReadFull(br.r, id[:]); err != nil {
		if err == io.EOF {
			return id, nil, io.EOF
		}
		return id, nil, br.cut("id", err)
	}
	l, err := binary.ReadUvarint(br.r)
	if err != nil {
		return id, nil, br.cut("frame length", err)
	}
	if l > MaxFrameLen {
		return id, nil, fmt.Errorf("%w: record %d: frame of %d bytes exceeds %d", ErrMalformed, br.n, l, MaxFrameLen)
	}
	if uint64(cap(br.buf)) < l {
		br.buf = make([]byte, l)
	}
	br.buf = br.buf[:l]
	if _, err := io.ReadFull(br.r, br.buf); err != nil {
		return id, nil, br.cut("frame", err)
	}
	br.n++
	return id, br.buf, nil
}

func (br *BatchReader) cut(what string, err error) error {
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return fmt.Errorf("%w: record %d: %s truncated", ErrMalformed, br.n, what)
	}
	if what == "frame length" {
		// ReadUvarint's only other error is an overflow.
		return fmt.Errorf("%w: record %d: %s: %v", ErrMalformed, br.n, what, err)
	}
	return fmt.Errorf("record %d: read %s: %w", br.n, what, err)
}

// ParseBatch calls fn for each record of a batch held in memory. The frames
// alias b; nothing is copied.
func ParseBatch(b []byte, fn func(id blockstore.ID, frame []byte) error) error {
	var p BatchParser
	if err := p.Feed(b, fn); err != nil {
		return err
	}
	return p.End(b)
}

// BatchParser parses a batch that arrives in pieces into one buffer, so
// that each record can be handled (a block hashed) while its bytes are
// still in the CPU's caches. The buffer must not move between calls.
type BatchParser struct {
	off int // bytes of the buffer parsed
	n   int // records parsed
}

// Feed calls fn for each record that b, the batch so far, now holds
// whole. The frames alias b.
func (p *BatchParser) Feed(b []byte, fn func(id blockstore.ID, frame []byte) error) error {
	for {
		id, frame, next, err := p.record(b)
		if err != nil || next == 0 {
			return err
		}
		if !id.IsHole() {
			if err := fn(id, frame); err != nil {
				return err
			}
		}
		p.off, p.n = next, p.n+1
	}
}

// End says whether b, the whole batch, ended with a whole record.
func (p *BatchParser) End(b []byte) error {
	rest := b[p.off:]
	switch {
	case len(rest) == 0:
		return nil
	case len(rest) < blockstore.IDSize:
		return fmt.Errorf("%w: record %d: id truncated", ErrMalformed, p.n)
	}
	if _, k := binary.Uvarint(rest[blockstore.IDSize:]); k <= 0 {
		return fmt.Errorf("%w: record %d: frame length truncated or overflowing", ErrMalformed, p.n)
	}
	return fmt.Errorf("%w: record %d: frame truncated", ErrMalformed, p.n)
}

// record parses the record at p.off in b; next is 0 when b does not hold
// all of it yet.
func (p *BatchParser) record(b []byte) (id blockstore.ID, frame []byte, next int, err error) {
	rest := b[p.off:]
	if len(rest) < blockstore.IDSize {
		return id, nil, 0, nil
	}
	id = blockstore.ID(rest[:blockstore.IDSize])
	l, k := binary.Uvarint(rest[blockstore.IDSize:])
	if k < 0 {
		return id, nil, 0, fmt.Errorf("%w: record %d: frame length truncated or overflowing", ErrMalformed, p.n)
	}
	if k == 0 { // the length's bytes have not all arrived
		return id, nil, 0, nil
	}
	if l > MaxFrameLen {
		return id, nil, 0, fmt.Errorf("%w: record %d: frame of %d bytes exceeds %d", ErrMalformed, p.n, l, MaxFrameLen)
	}
	start := blockstore.IDSize + k
	if uint64(len(rest)-start) < l {
		return id, nil, 0, nil
	}
	end := start + int(l)
	return id, rest[start:end:end], p.off + end, nil
}
