// Package badgerstore is dvfs's embedded block store: block payloads in
// append-only pack files, and in one badger database their index and the
// metadata. It is the only package that imports badger.
//
// Keys: "b" + the 32-byte block ID holds a block's index entry (ref.go:
// its pack, offset, length and frame header); "m" + key holds a metadata
// value. Block data never enters badger (packs.go says why), so badger's
// LSM tree holds only small values and its value log stays near empty.
package badgerstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"

	"github.com/dvfs-project/dvfs/blockstore"
)

var (
	_ blockstore.Store     = (*Store)(nil)
	_ blockstore.MetaStore = (*Store)(nil)
)

// Config tunes a Store. The zero value is usable: Open fills in defaults.
type Config struct {
	// Logger receives badger's messages (its chatter at Debug) and the
	// store's own; nil discards them.
	Logger *slog.Logger
	// ValueThreshold is the value size from which badger keeps a value in
	// the value log instead of the LSM tree.
	ValueThreshold int64
	// MemTableSize is the size of each of badger's memtables.
	MemTableSize int64
	// BlockCacheSize is the size of badger's cache of LSM table blocks.
	BlockCacheSize int64
	// IndexCacheSize bounds the memory of LSM table indexes and bloom filters.
	IndexCacheSize int64
	// ValueLogFileSize is the size at which a value log file is closed and
	// a new one started; value log GC works a file at a time.
	ValueLogFileSize int64
	// NumCompactors is the number of badger's compaction goroutines.
	NumCompactors int
	// GCInterval is how often value log GC runs; negative disables it.
	GCInterval time.Duration
	// GCDiscardRatio is the fraction of a value log file that must be
	// garbage before GC rewrites the file.
	GCDiscardRatio float64
	// PackSize is the size at which a pack file of block payloads is
	// closed and the next one started.
	PackSize int64
	// DirectWrites writes block payloads with O_DIRECT, past the page
	// cache (packs.go, writeDirect, says what that saves). For a store
	// filled in bulk whose blocks are not read back at once: a
	// workstation's cache, filled by multicast and by fetches. A file
	// system without O_DIRECT falls back to buffered writes.
	DirectWrites bool
	// DirectReads reads block payloads with O_DIRECT where the caller's
	// buffer allows it (a raw block read into an aligned buffer, as a
	// mount's reads of whole blocks are), so that they do not sit in the
	// page cache a second time beside the mounted file's pages. A file
	// system without O_DIRECT falls back to buffered reads.
	DirectReads bool
	// Volatile drops the durability promise of Put and CommitMeta: writes
	// are not synced, so a crash may lose the latest ones (never corrupt
	// what remains: badger truncates a torn log tail, and Get verifies
	// every block). For a cache whose every block can be fetched again,
	// where a sync per fill would cost more than the fill.
	Volatile bool
	// VerifiedPuts declares that every block put was verified against its
	// ID by the caller, as the workstation's cache does: the client and
	// the multicast receiver hash every block as it arrives. The store
	// then keeps each block's plain bytes (a compressed frame is decoded
	// once, on entry) with a CRC-32C of them in its index entry, and a
	// read checks that CRC where it would decode and hash the block again:
	// a warm read costs a pread and a hardware CRC. A payload damaged on
	// disk (bit rot, a torn write of a Volatile store) still fails the
	// read with ErrCorrupt. Blocks stored without a CRC (by a store
	// opened without this, or before it existed) are hashed on every read
	// as before. Plain payloads take more disk than compressed ones (a
	// VM disk's blocks compress about 2:1), as the local copy of a
	// template does.
	VerifiedPuts bool
	// CloseWait bounds how long Close waits for badger to write out its
	// memtable. Badger retries a failed flush every second without end (a
	// removed directory, a disk that fails writes), which made Close, and
	// a server's or a mount's exit, hang; after CloseWait, Close gives up with an
	// error wrapping ErrCloseStuck. Zero: 20 s.
	CloseWait time.Duration
}

// ErrCloseStuck is what Close returns when badger could not write out its
// memtable within Config.CloseWait. What the memtable holds is in badger's
// write-ahead log, synced as every write was (unless Volatile), and the
// next Open replays it; the process holding the store should exit, as
// badger goes on retrying (and holds the directory's lock) until it does.
var ErrCloseStuck = errors.New("badger could not write out its memtable (see its log: a removed directory, a disk that fails writes?); the next open replays it from the write-ahead log")

// Defaults, chosen for a 2-core machine with modest memory and a store of
// 64 KiB block frames.
const (
	// 1 KiB: index entries (~20 bytes) and small metadata stay in the
	// LSM tree next to their keys; a large metadata value (a manifest of
	// a big template) and the frames of stores written before pack files
	// go to the value log, where compactions do not rewrite them.
	defaultValueThreshold = 1 << 10
	// 16 MiB instead of 64 MiB: a memtable holds keys and index entries
	// or value pointers (about 100 bytes an entry with
	// skiplist overhead), so 16 MiB still takes ~150k blocks, ~10 GiB of
	// data, between flushes; and badger keeps up to 5 of them.
	defaultMemTableSize = 16 << 20
	// 20 s: twenty of badger's flush retries, each of which may have
	// found room freed meanwhile.
	defaultCloseWait = 20 * time.Second
	// 32 MiB instead of 256 MiB: the LSM tree holds keys and index
	// entries only, and block data is read from the packs through the
	// page cache, which the kernel sizes better than we can.
	defaultBlockCacheSize = 32 << 20
	// 16 MiB instead of unbounded: indexes and bloom filters of a large
	// store stay within a fixed budget.
	defaultIndexCacheSize = 16 << 20
	// 256 MiB instead of 1 GiB: GC rewrites a whole file to reclaim its
	// garbage, so smaller files make each GC pass cheaper and let space
	// come back sooner after blocks are deleted.
	defaultValueLogFileSize = 256 << 20
	// 2 instead of 4: one per core; badger requires at least 2 (the first
	// one gives priority to level 0).
	defaultNumCompactors = 2
	// Value log GC runs every 5 minutes, badger's documented example.
	defaultGCInterval = 5 * time.Minute
	// 0.5: rewrite a value log file when half of it is garbage, badger's
	// recommendation; lower rewrites more for little space.
	defaultGCDiscardRatio = 0.5
)

// withDefaults returns c with zero fields set to the defaults.
func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.PackSize == 0 {
		c.PackSize = packMaxSize
	}
	if c.CloseWait == 0 {
		c.CloseWait = defaultCloseWait
	}
	if c.ValueThreshold == 0 {
		c.ValueThreshold = defaultValueThreshold
	}
	if c.MemTableSize == 0 {
		c.MemTableSize = defaultMemTableSize
	}
	if c.BlockCacheSize == 0 {
		c.BlockCacheSize = defaultBlockCacheSize
	}
	if c.IndexCacheSize == 0 {
		c.IndexCacheSize = defaultIndexCacheSize
	}
	if c.ValueLogFileSize == 0 {
		c.ValueLogFileSize = defaultValueLogFileSize
	}
	if c.NumCompactors == 0 {
		c.NumCompactors = defaultNumCompactors
	}
	if c.GCInterval == 0 {
		c.GCInterval = defaultGCInterval
	}
	if c.GCDiscardRatio == 0 {
		c.GCDiscardRatio = defaultGCDiscardRatio
	}
	return c
}

// options maps c onto badger's options for dir.
func (c Config) options(dir string) badger.Options {
	return badger.DefaultOptions(dir).
		WithLogger(slogAdapter{c.Logger}).
		WithValueThreshold(c.ValueThreshold).
		WithMemTableSize(c.MemTableSize).
		WithBlockCacheSize(c.BlockCacheSize).
		WithIndexCacheSize(c.IndexCacheSize).
		WithValueLogFileSize(c.ValueLogFileSize).
		WithNumCompactors(c.NumCompactors).
		// Every commit is synced before it returns (Put and CommitMeta are
		// durable on return). SyncWrites=false with db.Sync() afterwards
		// is not enough: Sync flushes only the active memtable's WAL and
		// the newest value log file, and with SyncWrites=false badger syncs
		// neither a memtable WAL nor a value log file when it rotates to the
		// next one, so a batch that crossed a rotation could be lost on
		// power failure. Badger coalesces concurrent commits into one sync.
		WithSyncWrites(!c.Volatile).
		// Keys are random hashes and values are zstd frames or small
		// metadata: Snappy would spend CPU for nothing.
		WithCompression(options.None).
		// Off (badger's default): Get hashes every block it returns, a
		// stronger check than the value log's CRC.
		WithVerifyValueChecksum(false)
}

// Store is a block store and metadata store in a badger database.
type Store struct {
	db    *badger.DB
	packs *packSet
	log   *slog.Logger
	// verified: Config.VerifiedPuts.
	verified bool
	// closeWait: Config.CloseWait. dbClosed gets badger's Close error
	// once it returns, which may be after Close gave up waiting.
	closeWait time.Duration
	dbClosed  chan error

	// mu guards closed and active; cond wakes Close when active drops
	// to zero. Every method counts itself in active while it uses db, so
	// Close waits for them, and a method called after Close (even from a
	// callback of a running one) gets ErrClosed instead of a deadlock.
	mu     sync.Mutex
	cond   sync.Cond
	closed bool
	active int

	stopGC chan struct{}
	gcDone sync.WaitGroup

	// group lets concurrent Puts share their syncs.
	group groupCommit

	// compressMu makes CompressDeferred one at a time, and guards
	// compressFrom, the key its next round starts at, and damaged, the
	// deferred blocks it found damaged (never tried again). moveMu is
	// held by Delete, and by CompressDeferred while it moves blocks.
	compressMu   sync.Mutex
	compressFrom []byte
	damaged      map[blockstore.ID]bool
	moveMu       sync.Mutex
}

// Open opens or creates the store in dir.
func Open(dir string, cfg Config) (*Store, error) {
	cfg = cfg.withDefaults()
	db, err := badger.Open(cfg.options(dir))
	if err != nil {
		return nil, fmt.Errorf("badgerstore: open %s: %w", dir, err)
	}
	packs, err := openPacks(filepath.Join(dir, "packs"), cfg.Volatile, cfg.DirectWrites, cfg.PackSize)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("badgerstore: open %s: %w", dir, err)
	}
	packs.directReads.Store(cfg.DirectReads)
	s := &Store{db: db, packs: packs, log: cfg.Logger, verified: cfg.VerifiedPuts, closeWait: cfg.CloseWait,
		dbClosed: make(chan error, 1), stopGC: make(chan struct{}), damaged: map[blockstore.ID]bool{}}
	s.cond.L = &s.mu
	if cfg.GCInterval > 0 {
		s.gcDone.Go(func() { s.gcLoop(cfg.GCInterval, cfg.GCDiscardRatio) })
	}
	return s, nil
}

// gcLoop runs value log GC every interval until Close. Each round calls
// RunValueLogGC until it has nothing left to rewrite, as badger advises.
func (s *Store) gcLoop(interval time.Duration, ratio float64) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-s.stopGC:
			return
		case <-t.C:
		}
		rewrites := 0
		for {
			err := s.db.RunValueLogGC(ratio)
			if err == nil {
				rewrites++
				select {
				case <-s.stopGC:
					return
				default:
					continue
				}
			}
			if !errors.Is(err, badger.ErrNoRewrite) && !errors.Is(err, badger.ErrRejected) {
				s.log.Warn("value log GC", "err", err)
			}
			break
		}
		if rewrites > 0 {
			s.log.Info("value log GC", "files_rewritten", rewrites)
		}
	}
}

// enter checks ctx and Close and counts the caller as active; the caller
// must call exit.
func (s *Store) enter(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return blockstore.ErrClosed
	}
	s.active++
	return nil
}

func (s *Store) exit() {
	s.mu.Lock()
	s.active--
	if s.active == 0 && s.closed {
		s.cond.Broadcast()
	}
	s.mu.Unlock()
}

// Close waits for running calls, stops GC and closes the database, waiting
// at most Config.CloseWait for badger (ErrCloseStuck). It is idempotent;
// every other method then returns ErrClosed.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	for s.active > 0 {
		s.cond.Wait()
	}
	s.mu.Unlock()
	close(s.stopGC)
	s.gcDone.Wait()
	go func() { s.dbClosed <- s.db.Close() }()
	t := time.NewTimer(s.closeWait)
	defer t.Stop()
	var dbErr error
	select {
	case dbErr = <-s.dbClosed:
	case <-t.C:
		dbErr = fmt.Errorf("%w (gave up after %s)", ErrCloseStuck, s.closeWait)
	}
	if err := errors.Join(dbErr, s.packs.close()); err != nil {
		return fmt.Errorf("badgerstore: close: %w", err)
	}
	return nil
}

// slogAdapter passes badger's log to slog. Badger logs routine events
// (tables opened, memtables flushed) at Info: they go to Debug. Its own
// Debug lines come on every write, so they go one step below Debug
// (slog.LevelDebug-4), out of a Debug log unless asked for.
type slogAdapter struct{ l *slog.Logger }

func (a slogAdapter) log(level slog.Level, format string, args []any) {
	ctx := context.Background()
	if !a.l.Enabled(ctx, level) {
		return
	}
	a.l.Log(ctx, level, strings.TrimSpace(fmt.Sprintf(format, args...)), "component", "badger")
}

func (a slogAdapter) Errorf(f string, args ...any)   { a.log(slog.LevelError, f, args) }
func (a slogAdapter) Warningf(f string, args ...any) { a.log(slog.LevelWarn, f, args) }
func (a slogAdapter) Infof(f string, args ...any)    { a.log(slog.LevelDebug, f, args) }
func (a slogAdapter) Debugf(f string, args ...any)   { a.log(slog.LevelDebug-4, f, args) }
