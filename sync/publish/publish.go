// Package publish imports a directory (a VMware or QEMU VM folder) into a
// dvfs server as a new template version.
//
// Each regular file is cut into blocks; holes (by SEEK_HOLE, and blocks that
// read as zeros) cost nothing. Blocks are hashed, the server is asked which
// it lacks, and only those are compressed and uploaded, several batches in
// flight. The manifest is committed last, so an interrupted publish leaves
// no version behind, and running it again sends only what is still missing.
//
// The manifest keeps what a VM folder may hold besides data: every entry's
// owner and group, mode (setuid, setgid and sticky included), and atime and
// mtime to the nanosecond; FIFOs, sockets and device nodes, which are never
// opened; and hard links, as one primary entry and entries naming it, whose
// data is read and sent once.
package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"sync/atomic"

	"golang.org/x/sync/errgroup"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

type blockID = blockstore.ID

// Server is what a publish needs of the server (sync/client.Client).
type Server interface {
	Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error)
	// UploadParts uploads a batch (api.AppendBlock records) given as
	// parts sent back to back.
	UploadParts(ctx context.Context, parts [][]byte) error
	Commit(ctx context.Context, m *manifest.Manifest) (api.VersionInfo, error)
}

// Config configures a publish.
type Config struct {
	// Server receives the blocks and the manifest.
	Server Server
	// Name is the template's name.
	Name string
	// Dir is the directory published; it is the template's root.
	Dir string
	// BlockSize is the block size; 0 means blockstore.DefaultBlockSize.
	BlockSize int
	// Workers is how many goroutines read and hash; 0 means GOMAXPROCS.
	Workers int
	// Uploads is how many batches may be in flight; 0 means 4.
	Uploads int
	// Deferred sends blocks uncompressed, in deferred frames
	// (blockstore.EncodeDeferred), for the server to compress once the
	// publish is over. For a link faster than compression: a server on
	// this machine, where compressing here and decoding there to verify
	// took most of a publish's CPU (2.6 and 0.8 of 7.4 CPU-seconds for a
	// 2 GiB image, pprof), and sending is a copy.
	Deferred bool
	// BatchBlocks is how many blocks are asked about and uploaded at once;
	// 0 means 128 (8 MiB of 64 KiB blocks). Since the server answers an
	// upload once it has taken it (repo.Accept), smaller batches with more
	// in flight keep the link busier: publishing a 2 GiB image to a server
	// on this machine took 2.41-2.54 s with 8 MiB and 4 in flight, against
	// 2.43-2.96 s with 16 MiB and 3 (alternating, five runs each), and
	// holds less in memory.
	BatchBlocks int
	// Progress, if set, is called with the running totals now and then
	// from one goroutine, and once at the end.
	Progress func(Progress)
	// Logger receives the publish's log.
	Logger *slog.Logger
}

// Progress is a running count of a publish.
type Progress struct {
	// TotalBytes is the logical size of all regular files, each hard
	// linked file once.
	TotalBytes int64
	// DoneBytes is how much of TotalBytes has been hashed (holes count).
	DoneBytes int64
	// SentBytes is the frame bytes uploaded so far.
	SentBytes int64
}

// Result summarises a publish.
type Result struct {
	// Info describes the committed version.
	Info api.VersionInfo
	// Files is the number of entries (files, directories, symlinks,
	// special files, and each further name of a hard linked file).
	Files int
	// Bytes is the logical size of all regular files, each hard linked
	// file once.
	Bytes int64
	// Blocks counts data blocks (not holes), duplicates included.
	Blocks int
	// HoleBlocks counts blocks of zeros, which cost nothing.
	HoleBlocks int
	// NewBlocks and NewBytes count the blocks the server lacked and their
	// plain size: what this publish added.
	NewBlocks int
	NewBytes  int64
	// ReusedBlocks counts data blocks the server had already (or that
	// occur twice in the tree).
	ReusedBlocks int
	// SentBytes is the frame bytes uploaded (after compression, unless
	// Deferred).
	SentBytes int64
	// Deferred says the blocks were sent for the server to compress.
	Deferred bool
	// ResentBlocks counts blocks sent again because the commit found
	// them missing: a server that had taken them died before storing
	// them, and the publish went on through another.
	ResentBlocks int
}

// job is one block, read, to hash.
type job struct {
	file  int // index into files
	block int
	n     int
	data  *[]byte
}

// hashed is a job's outcome; data is nil for a hole.
type hashed struct {
	job
	id blockID
}

// Publish imports cfg.Dir as the next version of cfg.Name.
func Publish(ctx context.Context, cfg Config) (Result, error) {
	p, err := newPublisher(cfg)
	if err != nil {
		return Result{}, err
	}
	return p.run(ctx)
}

type publisher struct {
	cfg   Config
	bs    int
	log   *slog.Logger
	files []manifest.File
	pool  sync.Pool

	total, done, sent atomic.Int64
	res               Result
	resMu             sync.Mutex
	seen              map[blockID]struct{} // data blocks already batched
}

func newPublisher(cfg Config) (*publisher, error) {
	if err := manifest.ValidName(cfg.Name); err != nil {
		return nil, err
	}
	if cfg.BlockSize == 0 {
		cfg.BlockSize = blockstore.DefaultBlockSize
	}
	if cfg.Workers == 0 {
		cfg.Workers = runtime.GOMAXPROCS(0)
	}
	if cfg.Uploads == 0 {
		cfg.Uploads = 4
	}
	if cfg.BatchBlocks == 0 {
		cfg.BatchBlocks = 128
	}
	p := &publisher{cfg: cfg, bs: cfg.BlockSize, log: cfg.Logger, seen: make(map[blockID]struct{})}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	slabs := diskio.NewSlabs(p.bs)
	p.pool.New = func() any { b := slabs.Get(); return &b }
	return p, nil
}

func (p *publisher) run(ctx context.Context) (Result, error) {
	st, err := os.Stat(p.cfg.Dir)
	if err != nil {
		return Result{}, err
	}
	if !st.IsDir() {
		return Result{}, fmt.Errorf("%s is not a directory", p.cfg.Dir)
	}
	p.files, err = scanTree(p.cfg.Dir, uint32(p.bs))
	if err != nil {
		return Result{}, err
	}
	for _, f := range p.files {
		if f.Link == "" {
			p.total.Add(f.Size)
		}
	}
	p.res.Files, p.res.Bytes = len(p.files), p.total.Load()

	g, gctx := errgroup.WithContext(ctx)
	jobs := make(chan job, 4*p.cfg.Workers)
	results := make(chan hashed, 4*p.cfg.Workers)
	batches := make(chan []hashed, p.cfg.Uploads)

	g.Go(func() error { defer close(jobs); return p.produce(gctx, jobs) })
	var hashers sync.WaitGroup
	for range p.cfg.Workers {
		hashers.Add(1)
		g.Go(func() error { defer hashers.Done(); return p.hash(gctx, jobs, results) })
	}
	go func() { hashers.Wait(); close(results) }()
	g.Go(func() error { defer close(batches); return p.collect(gctx, results, batches) })
	for range p.cfg.Uploads {
		g.Go(func() error { return p.upload(gctx, batches) })
	}
	stopProgress := p.reportProgress()
	err = g.Wait()
	stopProgress()
	if err != nil {
		return p.res, err
	}
	fillLinks(p.files)
	m := &manifest.Manifest{
		Kind:      manifest.KindTemplate,
		Name:      p.cfg.Name,
		BlockSize: uint32(p.bs),
		Owners:    true,
		Files:     p.files,
	}
	info, err := p.commit(ctx, m)
	if err != nil {
		return p.res, fmt.Errorf("commit %s: %w", p.cfg.Name, err)
	}
	p.res.Info = info
	p.res.SentBytes = p.sent.Load()
	p.res.Deferred = p.cfg.Deferred
	return p.res, nil
}

// produce reads each regular file in order and queues its data blocks;
// whole blocks inside holes are recorded as holes without reading. A hard
// link entry is not read: its primary is, and fillLinks gives the
// primary's blocks to it at the end. One goroutine reads, sequentially and
// in runs of readRun blocks with one preadv each, straight into the
// blocks' buffers: reading alternate 64 KiB blocks from several workers
// defeated the kernel's readahead and cost most of a publish's CPU in
// syscalls (pprof).
func (p *publisher) produce(ctx context.Context, jobs chan<- job) error {
	for i := range p.files {
		f := &p.files[i]
		if !f.Mode.IsRegular() || f.Size == 0 || f.Link != "" {
			continue
		}
		if err := p.produceFile(ctx, i, jobs); err != nil {
			return fmt.Errorf("%s: %w", f.Path, err)
		}
	}
	return nil
}

// readRun is how many blocks one read covers.
const readRun = 16

func alignUp(n int) int { return (n + diskio.DirectAlign - 1) &^ (diskio.DirectAlign - 1) }

// openDirect opens path for reading with O_DIRECT when the block size
// allows it and the file system takes it (the pool's buffers are aligned). A publish
// reads each byte once: through the page cache, that cost a copy and the
// page cache's bookkeeping for every page (1.2 s of CPU in preadv for a
// 2 GiB image, pprof), and evicted the admin's own cached files for a
// file that will not be read again.
func openDirect(path string, bs int) (*os.File, bool, error) {
	if bs%diskio.DirectAlign == 0 {
		f, err := diskio.OpenDirect(path, os.O_RDONLY)
		if err == nil {
			return f, true, nil
		}
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, false, err
	}
	diskio.AdviseSequential(f)
	return f, false, nil
}

func (p *publisher) produceFile(ctx context.Context, i int, jobs chan<- job) error {
	mf := &p.files[i]
	path := filepath.Join(p.cfg.Dir, filepath.FromSlash(mf.Path))
	fh, direct, err := openDirect(path, p.bs)
	if err != nil {
		return err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return err
	}
	if st.Size() != mf.Size {
		return fmt.Errorf("changed size while publishing (%d, was %d)", st.Size(), mf.Size)
	}
	extents, err := dataExtents(fh, mf.Size)
	if err != nil {
		return err
	}
	// With O_DIRECT there is no readahead: keep a second read in flight
	// while the first one's blocks are handed on.
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(1)
	if direct {
		g.SetLimit(2)
	}
	var run []job
	flush := func() error {
		if len(run) == 0 {
			return gctx.Err()
		}
		r := run
		run = make([]job, 0, readRun)
		g.Go(func() error { return p.readRun(gctx, fh, direct, r, jobs) })
		return gctx.Err()
	}
	err = p.produceRuns(i, extents, &run, flush)
	return errors.Join(err, g.Wait())
}

// readRun reads the consecutive blocks of run with one preadv and queues
// them for hashing.
func (p *publisher) readRun(ctx context.Context, fh *os.File, direct bool, run []job, jobs chan<- job) error {
	iov := make([][]byte, 0, len(run))
	want := 0
	for _, j := range run {
		buf := (*j.data)[:j.n]
		if direct {
			// O_DIRECT reads whole aligned sectors: the last block's
			// read ends at the end of the file all the same.
			buf = (*j.data)[:alignUp(j.n)]
		}
		iov = append(iov, buf)
		want += j.n
	}
	off := int64(run[0].block) * int64(p.bs)
	got, err := diskio.PreadvFull(fh, iov, off)
	if err != nil {
		return fmt.Errorf("read at %d: %w", off, err)
	}
	if got > want {
		return fmt.Errorf("read at %d: file grew while publishing", off)
	}
	if got != want {
		return fmt.Errorf("read at %d: file shrank while publishing", off)
	}
	for _, j := range run {
		select {
		case jobs <- j:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

// produceRuns walks the blocks of file i, recording holes and gathering data
// blocks into runs of consecutive blocks, which flush reads.
func (p *publisher) produceRuns(i int, extents [][2]int64, run *[]job, flush func() error) error {
	mf := &p.files[i]
	bs := int64(p.bs)
	ext := 0
	for b := range mf.Blocks {
		off := int64(b) * bs
		n := min(bs, mf.Size-off)
		for ext < len(extents) && extents[ext][1] <= off {
			ext++
		}
		if ext == len(extents) || extents[ext][0] >= off+n {
			mf.Blocks[b] = blockstore.Hole
			p.countHole(n)
			if err := flush(); err != nil {
				return err
			}
			continue
		}
		bp := p.pool.Get().(*[]byte)
		*run = append(*run, job{file: i, block: b, n: int(n), data: bp})
		if len(*run) == readRun {
			if err := flush(); err != nil {
				return err
			}
		}
	}
	return flush()
}

func (p *publisher) countHole(n int64) {
	p.resMu.Lock()
	p.res.HoleBlocks++
	p.resMu.Unlock()
	p.done.Add(n)
}

// hash hashes blocks, telling blocks of zeros (holes) from data.
func (p *publisher) hash(ctx context.Context, jobs <-chan job, out chan<- hashed) error {
	for j := range jobs {
		h := hashed{job: j}
		buf := (*j.data)[:j.n]
		if blockstore.IsZero(buf) {
			p.pool.Put(j.data)
			h.data = nil
			h.id = blockstore.Hole
		} else {
			h.id = blockstore.Sum(buf)
			*j.data = buf
		}
		select {
		case out <- h:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}
