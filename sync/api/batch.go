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
	var n [binary.MaxVarintLen64]byte
	frameLen := 1 + len(binary.AppendUvarint(n[:0], uint64(len(plain)))) + len(plain)
	dst = append(dst, id[:]...)
	dst = binary.AppendUvarint(dst, uint64(frameLen))
	return blockstore.EncodeDeferred(dst, plain)
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
	for n := 0; len(b) > 0; n++ {
		if len(b) < blockstore.IDSize {
			return fmt.Errorf("%w: record %d: id truncated", ErrMalformed, n)
		}
		id := blockstore.ID(b[:blockstore.IDSize])
		b = b[blockstore.IDSize:]
		l, k := binary.Uvarint(b)
		if k <= 0 {
			return fmt.Errorf("%w: record %d: frame length truncated or overflowing", ErrMalformed, n)
		}
		if l > MaxFrameLen {
			return fmt.Errorf("%w: record %d: frame of %d bytes exceeds %d", ErrMalformed, n, l, MaxFrameLen)
		}
		b = b[k:]
		if uint64(len(b)) < l {
			return fmt.Errorf("%w: record %d: frame truncated", ErrMalformed, n)
		}
		if err := fn(id, b[:l:l]); err != nil {
			return err
		}
		b = b[l:]
	}
	return nil
}
