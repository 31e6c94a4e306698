package writeback

import (
	"bufio"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
)

// The outbox keeps a sealed generation's new blocks until they are on the
// server: one append-only file per seal, plain bytes as the clone held
// them (compression waits for the upload, and only for the blocks the
// server lacks). A seal writes its file into the page cache while the
// clone's changes are held off, then makes it durable with one fdatasync
// (and one fsync of the directory) after changes resume, before the
// pending generation that names it is saved. A file no pending generation
// names is garbage: a seal cut short by a crash, or one already committed.
//
// File: the magic, then records, each
//
//	32 bytes  block ID
//	4 bytes   plain length (big endian)
//	4 bytes   CRC-32C of the plain bytes, then of the delta fields below
//	32 bytes  delta base: the ID of the block's content at the last
//	          seal, or of its base block (all zeros: none; see delta)
//	8 bytes   mask of the sectors changed since the delta base
//	4 bytes   sector size of the mask
//	4 bytes   0: the bytes that follow are the whole block; else the
//	          block's length, and they are only the sectors of the mask,
//	          in its order (the block is the delta base with them
//	          replaced): a 4 KiB write into a 64 KiB block keeps 4 KiB
//	...       the plain bytes (the plain length above counts these)
//
// Files of formats 1 ("dvfsobx1": records of the first 40 bytes and the
// plain bytes, no delta) and 2 ("dvfsobx2": the last field always 0) are
// still read, so a pending generation sealed by an earlier version
// uploads after an upgrade. An earlier version refuses a format 3 file
// rather than misread it.
const (
	outboxMagic    = "dvfsobx3"
	outboxMagicV2  = "dvfsobx2"
	outboxMagicV1  = "dvfsobx1"
	outboxRecHdrV1 = blockstore.IDSize + 8
	outboxRecHdr   = outboxRecHdrV1 + blockstore.IDSize + 16
)

// delta says how a sealed block differs from a block the server holds:
// only the sectors in mask changed since base. A zero delta is none.
type delta struct {
	base       blockstore.ID
	mask       uint64
	sectorSize int
	// whole, when not 0, is the block's length, and the record holds
	// only the sectors of mask.
	whole int
}

// blockLen is the length of the block of a record of n bytes with delta d.
func (d delta) blockLen(n int) int {
	if d.whole != 0 {
		return d.whole
	}
	return n
}

func (d delta) ok() bool { return !d.base.IsHole() }

// fits reports whether d describes a block of n bytes.
func (d delta) fits(n int) bool {
	if !d.ok() || d.mask == 0 || d.sectorSize < blockstore.MinDeltaSector || d.sectorSize > blockstore.MaxDeltaSector || n == 0 {
		return false
	}
	sectors := (n + d.sectorSize - 1) / d.sectorSize
	return sectors <= blockstore.MaxDeltaSectors && (sectors == 64 || d.mask>>sectors == 0)
}

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// errOutboxCorrupt: an outbox file that does not read back as written.
var errOutboxCorrupt = errors.New("outbox file corrupt")

// outbox is a directory of outbox files. Writes leave reserve bytes free
// on its disk (see Config.OutboxReserve).
type outbox struct {
	dir     string
	reserve int64
}

func openOutbox(dir string) (*outbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	return &outbox{dir: dir}, nil
}

// outboxWriter appends blocks to a new outbox file. add may be called from
// several goroutines.
type outboxWriter struct {
	o    *outbox
	name string

	mu     sync.Mutex
	f      *os.File
	blocks int
	// sectorsOnly counts the records that hold only a delta's sectors.
	sectorsOnly int
}

// create starts outbox file name (created on the first add: a seal with
// no new blocks leaves no file).
func (o *outbox) create(name string) *outboxWriter {
	return &outboxWriter{o: o, name: name}
}

// add appends block id, with how it differs from a block the server
// holds (d). rec holds the block's plain bytes from offset outboxRecHdr
// on; add writes the record header into rec[:outboxRecHdr] and the whole
// record with one write.
func (w *outboxWriter) add(id blockstore.ID, rec []byte, d delta) error {
	plain := rec[outboxRecHdr:]
	copy(rec, id[:])
	binary.BigEndian.PutUint32(rec[blockstore.IDSize:], uint32(len(plain)))
	putDelta(rec[outboxRecHdrV1:outboxRecHdr], d)
	crc := crc32.Checksum(plain, crcTable)
	crc = crc32.Update(crc, crcTable, rec[outboxRecHdrV1:outboxRecHdr])
	binary.BigEndian.PutUint32(rec[blockstore.IDSize+4:], crc)
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.f == nil {
		f, err := os.OpenFile(filepath.Join(w.o.dir, w.name), os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return fmt.Errorf("outbox: %w", err)
		}
		w.f = f
		if _, err := f.WriteString(outboxMagic); err != nil {
			return fmt.Errorf("outbox %s: %w", w.name, err)
		}
	}
	if err := w.o.checkSpace(int64(len(rec))); err != nil {
		return fmt.Errorf("outbox %s: %w", w.name, err)
	}
	if _, err := w.f.Write(rec); err != nil {
		return fmt.Errorf("outbox %s: %w", w.name, err)
	}
	w.blocks++
	if d.whole != 0 {
		w.sectorsOnly++
	}
	return nil
}

func putDelta(b []byte, d delta) {
	copy(b, d.base[:])
	binary.BigEndian.PutUint64(b[blockstore.IDSize:], d.mask)
	binary.BigEndian.PutUint32(b[blockstore.IDSize+8:], uint32(d.sectorSize))
	binary.BigEndian.PutUint32(b[blockstore.IDSize+12:], uint32(d.whole))
}

// getDelta reads the delta fields of a record of n plain bytes; sectors
// says whether the file's format has the whole-length field (3).
func getDelta(b []byte, n int, sectors bool) (delta, error) {
	d := delta{
		base:       blockstore.ID(b[:blockstore.IDSize]),
		mask:       binary.BigEndian.Uint64(b[blockstore.IDSize:]),
		sectorSize: int(binary.BigEndian.Uint32(b[blockstore.IDSize+8:])),
	}
	if sectors {
		d.whole = int(binary.BigEndian.Uint32(b[blockstore.IDSize+12:]))
	}
	if !d.ok() {
		if d.mask != 0 || d.sectorSize != 0 || d.whole != 0 {
			return delta{}, fmt.Errorf("delta fields without a base")
		}
		return d, nil
	}
	if d.sectorSize < 512 || d.sectorSize > blockstore.MaxBlockSize || d.sectorSize&(d.sectorSize-1) != 0 {
		return delta{}, fmt.Errorf("sector size %d", d.sectorSize)
	}
	if d.whole != 0 && (!d.fits(d.whole) || n != blockstore.DeltaSectorBytes(d.whole, d.sectorSize, d.mask)) {
		return delta{}, fmt.Errorf("%d bytes of sectors %#x of a %d-byte block", n, d.mask, d.whole)
	}
	return d, nil
}

// file returns the file's name, or "" if no block was added.
func (w *outboxWriter) file() string {
	if w.f == nil {
		return ""
	}
	return w.name
}

// finish makes the file durable: its data, then its directory entry.
func (w *outboxWriter) finish() error {
	if w.f == nil {
		return nil
	}
	err := w.f.Sync()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = diskio.SyncDir(w.o.dir)
	}
	if err != nil {
		return fmt.Errorf("outbox %s: %w", w.name, err)
	}
	return nil
}

// abort closes and removes the file.
func (w *outboxWriter) abort() {
	if w.f != nil {
		w.f.Close()
		os.Remove(filepath.Join(w.o.dir, w.name))
	}
}

// scan reads outbox file name in order and calls fn with each record's
// block ID, plain bytes (valid only during the call: the whole block, or
// with d.whole only its sectors of d.mask) and delta, checked against the
// record's CRC. A short or damaged file gives an error
// wrapping errOutboxCorrupt.
func (o *outbox) scan(ctx context.Context, name string, fn func(id blockstore.ID, plain []byte, d delta) error) error {
	f, err := os.Open(filepath.Join(o.dir, name))
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	defer f.Close()
	r := bufio.NewReaderSize(f, 1<<20)
	var magic [len(outboxMagic)]byte
	if _, err := io.ReadFull(r, magic[:]); err != nil || string(magic[:]) != outboxMagic && string(magic[:]) != outboxMagicV2 && string(magic[:]) != outboxMagicV1 {
		return fmt.Errorf("outbox %s: no header: %w", name, errOutboxCorrupt)
	}
	hdrLen := outboxRecHdr
	if string(magic[:]) == outboxMagicV1 {
		hdrLen = outboxRecHdrV1
	}
	var hdrBuf [outboxRecHdr]byte
	hdr := hdrBuf[:hdrLen]
	var buf []byte
	for n := 0; ; n++ {
		if err := ctx.Err(); err != nil {
			return err
		}
		if _, err := io.ReadFull(r, hdr); err == io.EOF {
			return nil
		} else if err != nil {
			return fmt.Errorf("outbox %s record %d: %w (%v)", name, n, errOutboxCorrupt, err)
		}
		id := blockstore.ID(hdr[:blockstore.IDSize])
		l := binary.BigEndian.Uint32(hdr[blockstore.IDSize:])
		if l > blockstore.MaxBlockSize {
			return fmt.Errorf("outbox %s record %d: length %d: %w", name, n, l, errOutboxCorrupt)
		}
		if cap(buf) < int(l) {
			buf = make([]byte, l)
		}
		buf = buf[:l]
		if _, err := io.ReadFull(r, buf); err != nil {
			return fmt.Errorf("outbox %s record %d: %w (%v)", name, n, errOutboxCorrupt, err)
		}
		crc := crc32.Checksum(buf, crcTable)
		crc = crc32.Update(crc, crcTable, hdr[outboxRecHdrV1:])
		if crc != binary.BigEndian.Uint32(hdr[blockstore.IDSize+4:]) {
			return fmt.Errorf("outbox %s block %s: checksum mismatch: %w", name, id.Short(), errOutboxCorrupt)
		}
		var d delta
		if hdrLen == outboxRecHdr {
			var err error
			if d, err = getDelta(hdr[outboxRecHdrV1:], len(buf), string(magic[:]) == outboxMagic); err != nil {
				return fmt.Errorf("outbox %s block %s: %v: %w", name, id.Short(), err, errOutboxCorrupt)
			}
		}
		if err := fn(id, buf, d); err != nil {
			return err
		}
	}
}

// remove deletes outbox files; "" and absent files are ignored.
func (o *outbox) remove(names ...string) error {
	var errs []error
	for _, n := range names {
		if n == "" {
			continue
		}
		if err := os.Remove(filepath.Join(o.dir, n)); err != nil && !errors.Is(err, os.ErrNotExist) {
			errs = append(errs, fmt.Errorf("outbox: %w", err))
		}
	}
	return errors.Join(errs...)
}

// sweep deletes the files whose names start with prefix, but keep.
func (o *outbox) sweep(prefix, keep string) error {
	des, err := os.ReadDir(o.dir)
	if err != nil {
		return fmt.Errorf("outbox: %w", err)
	}
	var drop []string
	for _, de := range des {
		if n := de.Name(); strings.HasPrefix(n, prefix) && n != keep {
			drop = append(drop, n)
		}
	}
	return o.remove(drop...)
}
