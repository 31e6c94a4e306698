package badgerstore

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/dvfs-project/dvfs/blockstore/diskio"
)

// Pack files hold block payloads; badger holds only the index (a block's
// pack, offset, length and frame header) and the metadata. A payload is
// written once, by one pwritev per Put, and read by one pread straight into
// the caller's buffer: no value log whose memory map faults page by page on
// a cold read and is copied again on every write, and no value log GC
// rewriting live data. A deleted block's range is punched out of its pack
// (fallocate), so its disk space comes back at once; a pack whose every
// range is punched is removed.
//
// Every payload starts on a packAlign boundary, so a punch frees exactly the
// pages of the deleted payload. A raw 64 KiB block fills its 16 pages; a
// compressed or short one leaves the rest of its last page unused.
//
// Crash safety: a Put writes and syncs its payloads before it commits the
// index entries that point at them, so an entry never points at bytes that
// are not on disk (Volatile stores skip the sync; a torn write there shows
// up as a hash mismatch, never as data). A crash between the two leaves
// unreferenced bytes at the end of the active pack; each Open starts a new
// pack rather than appending after them, so they are never misread; they
// are lost space until the pack is removed (bounded by what was in flight).
const (
	packAlign   = 4096
	packMaxSize = 1 << 30
	packSuffix  = ".pack"
)

// packSet is the directory of pack files.
type packSet struct {
	dir      string
	volatile bool
	direct   bool
	maxSize  int64

	directReads atomic.Bool // read aligned payloads with O_DIRECT

	mu     sync.Mutex
	files  map[uint32]*os.File
	dio    map[uint32]*os.File // O_DIRECT write handles, when direct
	rdio   map[uint32]*os.File // O_DIRECT read handles, when directReads
	busy   map[uint32]int      // writes in flight, by pack: such a pack stays
	active uint32              // 0: none yet; created by the first reserve
	end    int64               // next free offset in the active pack
	next   uint32              // number of the next pack to create

	staged     atomic.Int64 // bytes writeDirect copied into a stage (Stats)
	directRead atomic.Int64 // bytes read with O_DIRECT (Stats)
}

func openPacks(dir string, volatile, direct bool, maxSize int64) (*packSet, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("packs: %w", err)
	}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("packs: %w", err)
	}
	p := &packSet{dir: dir, volatile: volatile, direct: direct, maxSize: maxSize,
		files: map[uint32]*os.File{}, dio: map[uint32]*os.File{}, rdio: map[uint32]*os.File{}, busy: map[uint32]int{}, next: 1}
	for _, e := range ents {
		num, ok := parsePackName(e.Name())
		if !ok {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, e.Name()), os.O_RDWR, 0)
		if err != nil {
			p.close()
			return nil, fmt.Errorf("packs: %w", err)
		}
		adviseSequential(f)
		p.files[num] = f
		p.next = max(p.next, num+1)
	}
	return p, nil
}

func packName(num uint32) string { return fmt.Sprintf("%08d%s", num, packSuffix) }

func parsePackName(name string) (uint32, bool) {
	s, ok := strings.CutSuffix(name, packSuffix)
	if !ok {
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 32)
	return uint32(n), err == nil && n > 0
}

// alignUp rounds n up to a multiple of packAlign.
func alignUp(n int64) int64 { return (n + packAlign - 1) &^ (packAlign - 1) }

// reserve returns a pack and an offset where n bytes (aligned) may be
// written by the caller alone, starting a new pack when the active one is
// full. A new pack's directory entry is synced before it is used. The
// caller must call done(pack) once its write is over.
func (p *packSet) reserve(n int64) (slot, error) {
	n = alignUp(n)
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.files == nil {
		return slot{}, os.ErrClosed
	}
	if p.active == 0 || (p.end > 0 && p.end+n > p.maxSize) {
		num := p.next
		f, err := os.OpenFile(filepath.Join(p.dir, packName(num)), os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o600)
		if err != nil {
			return slot{}, fmt.Errorf("packs: %w", err)
		}
		if !p.volatile {
			if err := diskio.SyncDir(p.dir); err != nil {
				f.Close()
				os.Remove(f.Name())
				return slot{}, fmt.Errorf("packs: %w", err)
			}
		}
		if p.direct {
			d, err := diskio.OpenDirect(f.Name(), os.O_WRONLY)
			if err != nil {
				// The file system takes no O_DIRECT: write through
				// the page cache.
				p.direct = false
			} else {
				p.dio[num] = d
			}
		}
		adviseSequential(f)
		p.files[num] = f
		p.next++
		p.active, p.end = num, 0
	}
	off := p.end
	p.end += n
	p.busy[p.active]++
	sl := slot{num: p.active, f: p.files[p.active], off: off}
	if d := p.dio[p.active]; d != nil {
		sl.f, sl.direct = d, true
	}
	return sl, nil
}

// A slot is a range of a pack that reserve gave one writer, and the
// handle to write it with.
type slot struct {
	num    uint32
	f      *os.File
	direct bool // f is an O_DIRECT handle
	off    int64
}

// done ends a write that reserve began.
func (p *packSet) done(num uint32) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.busy[num]--; p.busy[num] <= 0 {
		delete(p.busy, num)
	}
}

// file returns the open pack num.
func (p *packSet) file(num uint32) (*os.File, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.fileLocked(num)
}

// fileLocked is file for a caller that holds p.mu.
func (p *packSet) fileLocked(num uint32) (*os.File, error) {
	f := p.files[num]
	if f == nil {
		if p.files == nil {
			return nil, os.ErrClosed
		}
		return nil, fmt.Errorf("pack %d does not exist", num)
	}
	return f, nil
}

// readFile returns the handle to read buf from pack num at off with: an
// O_DIRECT one when direct reads are on and O_DIRECT can take buf as it is
// (diskio.Aligned; off always is, see packAlign), else the buffered one.
// A file system that takes no O_DIRECT turns direct reads off.
func (p *packSet) readFile(num uint32, off int64, buf []byte) (f *os.File, direct bool, err error) {
	if !p.directReads.Load() || off%packAlign != 0 || !diskio.Aligned(buf) {
		f, err = p.file(num)
		return f, false, err
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if f, err = p.fileLocked(num); err != nil {
		return nil, false, err
	}
	if d := p.rdio[num]; d != nil {
		return d, true, nil
	}
	d, err := diskio.OpenDirect(f.Name(), os.O_RDONLY)
	if err != nil {
		p.directReads.Store(false)
		return f, false, nil
	}
	p.rdio[num] = d
	return d, true, nil
}

// zeros pads payloads to packAlign.
var zeros [packAlign]byte

// write writes the payloads back to back from off, each padded to
// packAlign, into the slot sl. They are durable only after sync(sl.f).
func (p *packSet) write(sl slot, payloads [][]byte) error {
	f, off := sl.f, sl.off
	if sl.direct {
		return p.writeDirect(f, off, payloads)
	}
	iov := make([][]byte, 0, 2*len(payloads))
	for _, pl := range payloads {
		if len(pl) > 0 {
			iov = append(iov, pl)
		}
		if pad := alignUp(int64(len(pl))) - int64(len(pl)); pad > 0 {
			iov = append(iov, zeros[:pad])
		}
	}
	if err := diskio.PwritevFull(f, iov, off); err != nil {
		return fmt.Errorf("packs: write %s: %w", f.Name(), err)
	}
	return nil
}

// sync makes what was written to f durable, unless the set is volatile.
// O_DIRECT puts data on the device, not the file's size and extents: a
// direct write needs it too.
func (p *packSet) sync(f *os.File) error {
	if p.volatile {
		return nil
	}
	if err := diskio.Fdatasync(f); err != nil {
		return fmt.Errorf("packs: sync %s: %w", f.Name(), err)
	}
	return nil
}

// directChunk bounds one O_DIRECT write, and the staging buffer: a few MiB,
// and never less than the largest payload.
const directChunk = max(4<<20, (maxPayload+packAlign-1)&^(packAlign-1))

// stages are aligned staging buffers for O_DIRECT writes.
var stages = sync.Pool{New: func() any { b := diskio.HugeBuffer(directChunk); return &b }}

// writeDirect is write for an O_DIRECT handle. A payload that O_DIRECT
// can take as it is (diskio.Aligned: a multicast receiver assembles raw
// blocks so, see diskio.AlignedBufferAt, and a publisher pads its uploads
// so, see api.Padding) is written from where it lies;
// the others are copied, padded, into an aligned staging buffer. One
// pwritev takes both kinds, a few MiB at a time. Writing through the page
// cache, eight multicast receivers filling their caches at once on a
// 2-core machine spent 1.4 s of CPU per GiB in pwritev (page cache
// allocation, reclaim and dirty throttling in the writer's context)
// against 0.13 s for one writer alone; O_DIRECT costs 0.12 s per GiB
// however many write, and leaves the page cache to what workstations are
// using. The copy into the stage then took 1.8 of the 24 CPU-seconds of
// eight receivers' session (pprof), which aligned payloads skip.
func (p *packSet) writeDirect(f *os.File, off int64, payloads [][]byte) error {
	bp := stages.Get().(*[]byte)
	defer stages.Put(bp)
	stage := (*bp)[:0]
	var (
		iov     [][]byte
		pending int // bytes in iov
		staged  int // start of the stage's part not yet in iov
	)
	cut := func() { // closes the stage's open part into iov
		if staged < len(stage) {
			iov = append(iov, stage[staged:])
			staged = len(stage)
		}
	}
	flush := func() error {
		cut()
		if pending == 0 {
			return nil
		}
		if err := diskio.PwritevFull(f, iov, off); err != nil {
			return fmt.Errorf("packs: write %s: %w", f.Name(), err)
		}
		off += int64(pending)
		iov, pending, stage, staged = iov[:0], 0, stage[:0], 0
		return nil
	}
	for _, pl := range payloads {
		n := int(alignUp(int64(len(pl))))
		if pending+n > directChunk || len(iov) >= directIOV {
			if err := flush(); err != nil {
				return err
			}
		}
		pending += n
		if diskio.Aligned(pl) {
			cut()
			iov = append(iov, pl)
			continue
		}
		at := len(stage)
		stage = stage[:at+n]
		clear(stage[at+copy(stage[at:], pl):])
		p.staged.Add(int64(n))
	}
	return flush()
}

// directIOV bounds the buffers of one direct pwritev, under Linux's
// IOV_MAX of 1024 with room for the stage's parts between them.
const directIOV = 512

// adviseSequential tells the kernel that f is read in long runs. A mount
// reads one stream's blocks from several goroutines at once (a request's
// halves, and the kernel's parallel readahead requests), a little out of
// order; on that pattern the kernel's readahead fell back to small reads:
// a 2 GiB template read took 4,886 disk requests of 453 KiB on average,
// against 568 of 3.7 MiB with this advice. A random read is still read as
// it is asked for. Advice is only advice: an error changes nothing.
func adviseSequential(f *os.File) { diskio.AdviseSequential(f) }

// read fills buf from pack num at off.
func (p *packSet) read(num uint32, off int64, buf []byte) error {
	f, direct, err := p.readFile(num, off, buf)
	if err != nil {
		return err
	}
	_, err = f.ReadAt(buf, off)
	if direct && errors.Is(err, syscall.EINVAL) {
		// The file system opened the file O_DIRECT but refuses the
		// read (a sector larger than packAlign): read through the page
		// cache from now on.
		p.directReads.Store(false)
		return p.read(num, off, buf)
	}
	if err != nil {
		if errors.Is(err, io.EOF) {
			return fmt.Errorf("pack %d ends before %d+%d", num, off, len(buf))
		}
		return err
	}
	if direct {
		p.directRead.Add(int64(len(buf)))
	}
	return nil
}

// punch frees the aligned range of n bytes at off in pack num, and
// removes the pack when nothing in it is left and it is not the active one.
func (p *packSet) punch(num uint32, off, n int64) error {
	f, err := p.file(num)
	if err != nil {
		return err
	}
	if err := diskio.Punch(f, off, alignUp(n)); err != nil {
		return fmt.Errorf("packs: punch %s: %w", f.Name(), err)
	}
	if used, err := diskio.Allocated(f); err != nil || used > 0 {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if num == p.active || p.busy[num] > 0 || p.files[num] != f {
		return nil
	}
	delete(p.files, num)
	if d := p.dio[num]; d != nil {
		delete(p.dio, num)
		d.Close()
	}
	if d := p.rdio[num]; d != nil {
		delete(p.rdio, num)
		d.Close()
	}
	// Closed before it is removed: Windows removes no open file.
	err = f.Close()
	os.Remove(f.Name())
	return err
}

// usage returns the bytes the packs take on disk.
func (p *packSet) usage() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	var total int64
	for _, f := range p.files {
		if used, err := diskio.Allocated(f); err == nil {
			total += used
		}
	}
	return total
}

// close closes every pack.
func (p *packSet) close() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	var errs []error
	nums := make([]uint32, 0, len(p.files))
	for num := range p.files {
		nums = append(nums, num)
	}
	slices.Sort(nums)
	for _, num := range nums {
		errs = append(errs, p.files[num].Close())
		if d := p.dio[num]; d != nil {
			errs = append(errs, d.Close())
		}
		if d := p.rdio[num]; d != nil {
			errs = append(errs, d.Close())
		}
	}
	p.files = nil
	return errors.Join(errs...)
}
