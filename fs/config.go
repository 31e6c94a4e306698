package fs

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// BlockReader reads base blocks (template or clone-generation blocks) by ID.
// It is safe for concurrent use.
type BlockReader interface {
	// ReadBlock appends the verified plain bytes of block id to dst. It is
	// never called with blockstore.Hole.
	ReadBlock(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error)
	// Prefetch hints that the blocks will be read soon (a sequential
	// reader is ahead of them). It must not block.
	Prefetch(ids []blockstore.ID)
}

// RunReader is a BlockReader that also reads many whole blocks with one
// call: a sequential reader's request, read from disk in runs.
type RunReader interface {
	// ReadBlocks fills dst, which holds len(ids) blocks of size bytes
	// back to back, with the verified plain bytes of ids (never a hole).
	// A block of another size is an error wrapping blockstore.ErrCorrupt.
	ReadBlocks(ctx context.Context, ids []blockstore.ID, size int, dst []byte) error
}

// TemplateInfo names a template and its versions.
type TemplateInfo struct {
	Name     string
	Versions []uint64
}

// Catalog tells the mount what exists. Manifests it returns are
// signature-verified. An unknown name or version gives an error wrapping
// io/fs.ErrNotExist or blockstore.ErrNotFound. Safe for concurrent use.
type Catalog interface {
	// Templates lists the templates and their versions.
	Templates(ctx context.Context) ([]TemplateInfo, error)
	// Template returns the manifest of name@version; version 0 is the latest.
	Template(ctx context.Context, name string, version uint64) (*manifest.Manifest, error)
	// Clones lists the user's clones.
	Clones(ctx context.Context) ([]string, error)
	// Clone returns a clone's base tree: its committed generation.
	Clone(ctx context.Context, name string) (*manifest.Manifest, error)
}

// Config configures an FS. Blocks, Catalog, Meta and StateDir are required;
// New fills in the other fields' defaults.
type Config struct {
	// Blocks reads the blocks of templates and clone bases.
	Blocks BlockReader
	// Catalog lists templates and clones and hands out their manifests.
	Catalog Catalog
	// Meta keeps the overlays' metadata (keys under "ovl/"), durably and
	// atomically; it may be shared with other users of other prefixes.
	Meta blockstore.MetaStore
	// StateDir holds the overlays' data files, one directory per clone.
	StateDir string
	// Logger receives the filesystem's log; nil discards it.
	Logger *slog.Logger
	// CatalogTTL is how long the lists of templates and clones are
	// trusted before the Catalog is asked again.
	CatalogTTL time.Duration
	// FlushInterval is how often changed clone files are made durable
	// (data synced, then metadata committed); negative disables it.
	FlushInterval time.Duration
	// PrefetchBlocks is how many blocks ahead of a sequential reader are
	// passed to BlockReader.Prefetch.
	PrefetchBlocks int
	// CacheBlocks is how many decoded base blocks are kept in memory, for
	// readers that come back to the block they just read.
	CacheBlocks int
	// OnSync, if set, is called with the clone's name after every
	// successful fsync or fdatasync of a file or directory of a clone, from
	// the syncing goroutine, with no lock of the clone held: it must not
	// block.
	OnSync func(clone string)
	// Writable, if set, is asked before every change to a clone (an open
	// for writing, create, mkdir, symlink, rename, unlink, rmdir, setattr,
	// fallocate, each write), with no lock of the clone held; it must be
	// cheap. A non-nil error makes the change fail with ErrReadOnly, and
	// its text is logged at Warn, once per clone per minute. Reads are
	// never refused.
	Writable func(clone string) error
	// MinFree is the free space the disk of StateDir keeps for what must
	// never fail there (the metadata stores map their files: a write into
	// a mapped page on a full disk kills the process): below it, writes,
	// growth and new entries in clones fail with ENOSPC; reads, deletes
	// and syncs of what was written go on. 0 keeps no reserve.
	MinFree int64
	// ShareClones opens the clones directory to every local user (0555);
	// by default it is its owner's only (0500): with a mount shared with
	// other users (allow_other), the clones, whose files are typically
	// 0644, stay the mounting user's, as in a home directory, while the
	// templates are everyone's.
	ShareClones bool
	// Owner owns what a clone makes when the request names no caller
	// (WithCaller), and every entry of a clone or template whose manifest
	// keeps no owners (made before dvfs kept them): local IDs, usually the
	// mounting user's. The zero Owner is root.
	Owner Owner
	// IDMap maps owners between this workstation and the server; by
	// default IDs are the same on both.
	IDMap IDMap
	// MapNames shows the names Win32 cannot open (forbidden characters,
	// a trailing dot or space, device names, bytes that are not UTF-8)
	// mapped into Unicode's private-use range, and stores a name made
	// through the mount as what it stands for (names.go). dvfs mount turns
	// it on on Windows.
	MapNames bool
	// CaseInsensitive finds an entry whatever the case of the name asked
	// for, as Windows does, over names kept as they were made: a new name
	// that differs only in case from an entry is that entry (ErrExist
	// for an exclusive create), and of two stored names that differ only
	// in case one shows case-apart (names.go). dvfs mount turns it on on
	// Windows.
	CaseInsensitive bool
}

// Defaults, in one place.
const (
	// 5 s: a template published or a clone made on the server shows up
	// within seconds, while ls in a loop costs the server nothing.
	defaultCatalogTTL = 5 * time.Second
	// 5 s: the most a crash loses of writes nobody fsynced, as ext4's
	// default commit interval.
	defaultFlushInterval = 5 * time.Second
	// 32 blocks (2 MiB at 64 KiB): enough to keep a remote fetch ahead of
	// a reader at disk speed, little to waste when the reader stops.
	defaultPrefetchBlocks = 32
	// 64 blocks (4 MiB at 64 KiB): the kernel's page cache does the real
	// caching; this catches the 4 KiB reads that land in one block.
	defaultCacheBlocks = 64
)

func (c Config) withDefaults() Config {
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	if c.CatalogTTL == 0 {
		c.CatalogTTL = defaultCatalogTTL
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = defaultFlushInterval
	}
	if c.PrefetchBlocks == 0 {
		c.PrefetchBlocks = defaultPrefetchBlocks
	}
	if c.CacheBlocks == 0 {
		c.CacheBlocks = defaultCacheBlocks
	}
	return c
}

func (c Config) check() error {
	switch {
	case c.Blocks == nil:
		return errors.New("fs: Config.Blocks is nil")
	case c.Catalog == nil:
		return errors.New("fs: Config.Catalog is nil")
	case c.Meta == nil:
		return errors.New("fs: Config.Meta is nil")
	case c.StateDir == "":
		return errors.New("fs: Config.StateDir is empty")
	}
	return nil
}
