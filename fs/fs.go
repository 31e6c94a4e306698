package fs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

// FS is a mounted dvfs tree. Its methods and the nodes it hands out are
// safe for concurrent use.
type FS struct {
	cfg      Config
	ids      idMapper
	log      *slog.Logger
	started  time.Time
	cache    *blockCache
	runs     RunReader                           // cfg.Blocks when it reads runs, else nil
	openData func(path string) (dataFile, error) // tests inject faults here

	root      *rootDir
	templates *templatesDir
	clones    *clonesDir
	rootNames *nameIndex // the root's Windows names; nil without them

	// spaces hands out inode number spaces, one per template view and
	// per clone.
	spaces atomic.Uint64

	mu     sync.Mutex // guards the fields below
	views  map[viewKey]*tmplView
	loaded map[string]*clone
	closed bool

	loadMu sync.Mutex // one clone load (or Drop) at a time

	// changes counts, per clone name, the changes that ended (see
	// Changes); it outlives a Drop.
	changes sync.Map // string -> *atomic.Uint64

	roMu     sync.Mutex           // guards roWarned
	roWarned map[string]time.Time // when a refusal of Writable was last logged, per clone

	stop chan struct{}
	done sync.WaitGroup
}

// New returns an FS. It starts the background flusher, which Close stops.
func New(cfg Config) (*FS, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	ids, err := newIDMapper(cfg.IDMap)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("fs: state dir: %w", err)
	}
	fsys := &FS{
		cfg:      cfg,
		ids:      ids,
		log:      cfg.Logger,
		started:  time.Now(),
		cache:    newBlockCache(cfg.CacheBlocks),
		openData: openOSDataFile,
		views:    make(map[viewKey]*tmplView),
		loaded:   make(map[string]*clone),
		roWarned: make(map[string]time.Time),
		stop:     make(chan struct{}),
	}
	fsys.runs, _ = cfg.Blocks.(RunReader)
	fsys.root = &rootDir{fsys}
	fsys.templates = &templatesDir{fsys: fsys}
	fsys.clones = &clonesDir{fsys: fsys}
	if fsys.rootNames = fsys.newNameIndex(); fsys.rootNames != nil {
		fsys.rootNames.add("clones")
		fsys.rootNames.add("templates")
	}
	if cfg.FlushInterval > 0 {
		fsys.done.Go(func() { fsys.flushLoop(cfg.FlushInterval) })
	}
	return fsys, nil
}

// Root returns the top directory, which holds templates/ and clones/,
// and below which names show as Config.MapNames and CaseInsensitive say.
func (fsys *FS) Root() Dir {
	if fsys.windowsView() {
		return &winDir{fsys.root}
	}
	return fsys.root
}

// Flush makes every change made so far durable, as an fsync of every
// changed clone file.
func (fsys *FS) Flush(ctx context.Context) error {
	fsys.mu.Lock()
	clones := make([]*clone, 0, len(fsys.loaded))
	for _, c := range fsys.loaded {
		clones = append(clones, c)
	}
	fsys.mu.Unlock()
	var errs []error
	for _, c := range clones {
		errs = append(errs, c.flush(ctx))
	}
	return errors.Join(errs...)
}

// Close stops the flusher, flushes every clone and closes their data
// files. Call it after the adapter has stopped serving.
func (fsys *FS) Close(ctx context.Context) error {
	fsys.mu.Lock()
	if fsys.closed {
		fsys.mu.Unlock()
		return nil
	}
	fsys.closed = true
	fsys.mu.Unlock()
	close(fsys.stop)
	fsys.done.Wait()
	err := fsys.Flush(ctx)
	fsys.mu.Lock()
	defer fsys.mu.Unlock()
	for _, c := range fsys.loaded {
		err = errors.Join(err, c.close())
	}
	return err
}

// writable asks Config.Writable whether clone name may change, logging a
// refusal once per clone per minute.
func (fsys *FS) writable(name string) error {
	if fsys.cfg.Writable == nil {
		return nil
	}
	err := fsys.cfg.Writable(name)
	if err == nil {
		return nil
	}
	now := time.Now()
	fsys.roMu.Lock()
	last, seen := fsys.roWarned[name]
	warn := !seen || now.Sub(last) >= time.Minute
	if warn {
		fsys.roWarned[name] = now
	}
	fsys.roMu.Unlock()
	if warn {
		fsys.log.Warn("clone is read-only", "clone", name, "reason", err.Error())
	}
	// The reason is text only: what it wraps must not change the errno.
	return fmt.Errorf("clone %s: %w: %v", name, ErrReadOnly, err)
}

// Changes counts the changes to clone name that have ended (writes,
// truncates, namespace changes, opens for writing) since the FS started.
// Read while Seal holds changes off, it counts exactly the changes the
// seal captures: a writeback compares it with the count at its last
// committed seal to know whether anything is unsealed.
func (fsys *FS) Changes(name string) uint64 { return fsys.changeCounter(name).Load() }

func (fsys *FS) changeCounter(name string) *atomic.Uint64 {
	v, _ := fsys.changes.LoadOrStore(name, new(atomic.Uint64))
	return v.(*atomic.Uint64)
}

// flushLoop flushes every interval until Close.
func (fsys *FS) flushLoop(interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-fsys.stop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), interval*4)
		if err := fsys.Flush(ctx); err != nil {
			fsys.log.Warn("periodic flush", "err", err)
		}
		cancel()
	}
}

// Inode numbers: the top 24 bits name a space (0 for the fixed top of the
// tree, then one per template view and per clone), the low 40 bits a node
// in it.
const inoLocalBits = 40

func makeIno(space, local uint64) uint64 { return space<<inoLocalBits | local }

// Inode numbers of the fixed top of the tree; 1 is FUSE's root.
const (
	inoRoot      = 1
	inoTemplates = 2
	inoClones    = 3
)

func (fsys *FS) newSpace() uint64 { return fsys.spaces.Add(1) }
