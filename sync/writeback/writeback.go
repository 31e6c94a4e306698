// Package writeback makes a workstation's clone changes live on the server
// while the clone runs at local speed. It seals the clone's overlay into a
// generation at crash-consistent points (every fsync, every few seconds
// under writes, and at unmount), keeps the sealed blocks durably in a local
// outbox, uploads them, and commits the generation on the server as a
// compare-and-swap under the clone's lease. Nothing waits on the network
// but an unmount's final flush: the write path only marks blocks dirty.
//
// Order, as everywhere in dvfs: blocks before metadata. A sealed
// generation's new blocks are in the outbox (a file, synced) before its
// manifest is saved as pending, and on the server before the commit.
package writeback

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Entry is one entry of a sealed clone, as the filesystem reports it.
type Entry struct {
	Path     string
	Ino      uint64 // entries with the same Ino are names of one file
	Mode     fs.FileMode
	MTime    time.Time
	ATime    time.Time
	UID, GID uint32 // the owner, as the server numbers users
	Rdev     uint64 // device nodes
	Target   string
	Size     int64
	BasePath string   // the base file a regular file started as ("": new)
	BaseSize int64    // base data at or past this offset reads as zeros
	Local    []uint64 // bitmap of blocks with local sectors
	Dirty    []int64  // such blocks changed since the last successful seal
	// DirtySectors and LocalSectors hold, for each block of Dirty, the
	// mask of its sectors (of SectorSize bytes) changed since that seal
	// (all for a block whose length changed), and of those local.
	DirtySectors, LocalSectors []uint64
	SectorSize                 int64
	// Shrunk: the file was cut short since that seal.
	Shrunk bool
}

func (e *Entry) local(i int64) bool {
	w := i / 64
	return w < int64(len(e.Local)) && e.Local[w]&(1<<(i%64)) != 0
}

// Overlay is what the writeback needs of the filesystem (fs.FS, adapted in
// cmd/dvfs).
type Overlay interface {
	// Seal holds off changes to the clone and calls fn with its entries
	// and a reader of local blocks; dirty marks clear when fn succeeds.
	Seal(ctx context.Context, clone string, fn func(entries []Entry, r Reader) error) error
	// Drop discards the clone's local overlay.
	Drop(ctx context.Context, clone string) error
}

// Reader reads a sealed clone's local blocks during Seal's fn (fs.SealReader),
// from several goroutines at once.
type Reader interface {
	// ReadBlock reads local block `block` of file ino whole (or the short
	// last block) into dst: local sectors over the base.
	ReadBlock(ino uint64, block int64, dst []byte) ([]byte, error)
	// ReadSectors appends the sectors in mask of whole block `block` of
	// file ino, in mask order, from the local data alone; every one must
	// be local.
	ReadSectors(ino uint64, block int64, mask uint64, dst []byte) ([]byte, error)
}

// SectorCVer is what Config.Blocks may also do (sync/cache over a store
// that keeps them): give a cached block's sector chaining values
// (blockstore.AppendSectorCVs), checked against its ID, without fetching.
type SectorCVer interface {
	SectorCVs(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error)
}

// Server is what the writeback asks of the server (sync/client.Client).
type Server interface {
	Clone(ctx context.Context, name string) (api.CloneInfo, error)
	GenerationManifest(ctx context.Context, name string, gen uint64) (*manifest.Manifest, error)
	AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, force bool) (api.Lease, error)
	ReleaseLease(ctx context.Context, name, holder string, epoch uint64) error
	Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error)
	Upload(ctx context.Context, batch []byte) error
	// CommitGeneration commits m after generation parent; parentManifest,
	// when known, lets m travel as what changed.
	CommitGeneration(ctx context.Context, m *manifest.Manifest, parent, epoch uint64, parentManifest *manifest.Manifest) (api.CloneInfo, error)
	CreateClone(ctx context.Context, m *manifest.Manifest, template string, version uint64) (api.CloneInfo, error)
}

// Store is where the writeback keeps its state: durable (every CommitMeta
// synced). Its blocks are read only for pending generations sealed by
// earlier versions, whose outbox was the Store's blocks.
type Store interface {
	blockstore.Store
	blockstore.MetaStore
}

// Config configures a Writeback.
type Config struct {
	// Server receives the generations.
	Server Server
	// Overlay is the filesystem whose clones are written back.
	Overlay Overlay
	// Store keeps the writeback's state (durable).
	Store Store
	// OutboxDir is the directory of the outbox files, the sealed blocks
	// not yet on the server (a local disk that keeps what is synced).
	OutboxDir string
	// OutboxReserve is the free space seals leave on the outbox's disk:
	// a seal that would leave less fails with ENOSPC and is retried (the
	// stall shows in Status). 0 keeps no reserve.
	OutboxReserve int64
	// Blocks reads base blocks (the workstation cache): for a block a seal
	// must rebuild from its base (a file shrunk mid-block), and for a block
	// sealed as its written sectors that must go to the server whole. If
	// it is also a SectorCVer, a seal of a block whose base it holds
	// hashes only the sectors written, and the outbox keeps only those.
	Blocks interface {
		ReadBlock(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error)
	}
	// Holder names this workstation in leases.
	Holder string
	// LeaseTTL is how long a lease lasts unless renewed; 0 means 60 s.
	LeaseTTL time.Duration
	// Interval is how often a clone with changes is sealed; 0 means 5 s.
	Interval time.Duration
	// Logger receives the writeback's log.
	Logger *slog.Logger
	// Progress, if set, is told about flushes (bytes to upload, done).
	Progress func(clone string, done, total int64)
}

// Writeback runs the writeback of every clone this workstation opens.
type Writeback struct {
	cfg    Config
	log    *slog.Logger
	outbox *outbox
	seq    atomic.Uint64 // names outbox files

	mu     sync.Mutex
	clones map[string]*cloneWB
	bg     context.Context
	stop   context.CancelFunc
	wg     sync.WaitGroup
	stats  stats
}

// New returns a Writeback; Start runs its background loops.
func New(cfg Config) (*Writeback, error) {
	if cfg.Server == nil || cfg.Store == nil || cfg.Holder == "" || cfg.OutboxDir == "" {
		return nil, errors.New("writeback: Server, Store, OutboxDir and Holder are required")
	}
	ob, err := openOutbox(cfg.OutboxDir)
	if err != nil {
		return nil, err
	}
	ob.reserve = cfg.OutboxReserve
	if cfg.LeaseTTL == 0 {
		cfg.LeaseTTL = 60 * time.Second
	}
	if cfg.Interval == 0 {
		cfg.Interval = 5 * time.Second
	}
	w := &Writeback{cfg: cfg, log: cfg.Logger, outbox: ob, clones: make(map[string]*cloneWB)}
	if w.log == nil {
		w.log = slog.New(slog.DiscardHandler)
	}
	w.bg, w.stop = context.WithCancel(context.Background())
	return w, nil
}

// HolderName makes a stable lease holder name for a workstation from its
// host name and cache directory.
func HolderName(host, cacheDir string) string {
	sum := sha256.Sum256([]byte(cacheDir))
	return host + "/" + hex.EncodeToString(sum[:3])
}

// outboxPrefix starts the names of clone's outbox files.
func outboxPrefix(clone string) string {
	sum := sha256.Sum256([]byte(clone))
	return hex.EncodeToString(sum[:8]) + "-"
}

// outboxName names a new outbox file of clone.
func (w *Writeback) outboxName(clone string) string {
	return fmt.Sprintf("%s%x-%d", outboxPrefix(clone), time.Now().UnixNano(), w.seq.Add(1))
}

func (w *Writeback) clone(name string) *cloneWB {
	w.mu.Lock()
	defer w.mu.Unlock()
	c := w.clones[name]
	if c == nil {
		c = &cloneWB{w: w, name: name, kick: make(chan struct{}, 1), flushReq: make(chan chan error), dropped: make(chan struct{})}
		w.clones[name] = c
		w.wg.Add(1)
		go c.loop(w.bg)
	}
	return c
}

// Synced tells the writeback that a file of clone was fsynced: a seal is
// due. It never blocks (the filesystem calls it on its fsync path).
func (w *Writeback) Synced(clone string) { w.clone(clone).poke() }

// Writable says whether this workstation may change clone: it must hold
// the clone's lease, taking it when nobody else has it. The error says who
// holds it.
func (w *Writeback) Writable(clone string) error {
	c := w.clone(clone)
	if err := c.writable(w.bg); err != nil {
		return err
	}
	c.mu.Lock()
	c.markChanging()
	c.mu.Unlock()
	return nil
}

// Flush seals every clone with changes and waits until each generation is
// committed on the server (or ctx ends).
func (w *Writeback) Flush(ctx context.Context) error {
	w.mu.Lock()
	var cs []*cloneWB
	for _, c := range w.clones {
		cs = append(cs, c)
	}
	w.mu.Unlock()
	var errs []error
	for _, c := range cs {
		if err := c.flush(ctx); err != nil {
			errs = append(errs, fmt.Errorf("clone %s: %w", c.name, err))
		}
	}
	return errors.Join(errs...)
}

// Close flushes (bounded by ctx), releases the leases and stops.
func (w *Writeback) Close(ctx context.Context) error {
	err := w.Flush(ctx)
	w.mu.Lock()
	cs := make([]*cloneWB, 0, len(w.clones))
	for _, c := range w.clones {
		cs = append(cs, c)
	}
	w.mu.Unlock()
	if err == nil {
		for _, c := range cs {
			c.release(ctx)
		}
	}
	w.stop()
	w.wg.Wait()
	return err
}

// SetOverlay sets the filesystem after New (the two refer to each other:
// the filesystem asks the writeback before changes, the writeback seals
// the filesystem). Call it before the filesystem serves.
func (w *Writeback) SetOverlay(o Overlay) { w.cfg.Overlay = o }
