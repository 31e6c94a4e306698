//go:build linux

package gofuse

import (
	"fmt"
	"log/slog"
	"os"
	"time"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/dvfs-project/dvfs/fs"
)

// CacheMode says how the kernel caches clone files.
type CacheMode int

const (
	// CacheWriteback keeps reads in the page cache and gathers writes
	// there too, sending them on in large requests, at fsync, and under
	// memory pressure. The default: see Options.CloneCache.
	CacheWriteback CacheMode = iota
	// CacheWritethrough keeps reads in the page cache; every write(2)
	// becomes a request of its own before it returns.
	CacheWritethrough
	// CacheDirect bypasses the page cache: every read and write becomes a
	// request. Shared writable mmap fails with ENODEV in this mode.
	CacheDirect
)

// Options configure a mount.
type Options struct {
	// AllowOther lets users other than the one who mounted in; the kernel
	// then checks permissions (default_permissions).
	AllowOther bool
	// Debug logs every FUSE request and reply at Debug level.
	Debug bool
	// Logger receives the adapter's log; nil discards it.
	Logger *slog.Logger
	// CloneCache is how clone files are cached. The default, writeback,
	// measured on 4 KiB writes (bench notes in cache_bench_test.go): it
	// turns a VM's small writes into requests of up to MaxWrite, and
	// fsync, O_DIRECT and shared mmap keep working.
	CloneCache CacheMode
	// MaxWrite is the largest read or write request, 1 MiB by default:
	// 16 blocks per request on sequential I/O.
	MaxWrite int
	// ReadAhead is how many bytes the kernel reads ahead of a sequential
	// reader: 0 means DefaultReadAhead, a negative value leaves the
	// kernel's default (128 KiB). Setting it needs root; without, the
	// mount works with the kernel's default and says so in the log.
	ReadAhead int
	// Observe, if set, is called with each request's operation ("read",
	// "lookup", ...) and how long the adapter took to answer it.
	Observe func(op string, d time.Duration)
}

// Timeouts of the kernel's caches.
const (
	// immutableTimeout: template nodes never change.
	immutableTimeout = time.Hour
	// cloneTimeout: a clone changes only through this mount, so the
	// kernel's view is never stale; the timeout bounds how long a node
	// changed by the core itself (a future rebase) could look old.
	cloneTimeout = time.Second
	// listTimeout: templates/ and clones/ follow the server's catalog.
	listTimeout = time.Second
	// negativeTimeout: how long a missing name is remembered.
	negativeTimeout = time.Second
)

// mount is the state every node points back to.
type mount struct {
	core *fs.FS
	log  *slog.Logger
	opts Options
}

// Server is a mounted filesystem.
type Server struct {
	srv        *fuse.Server
	mountpoint string
}

// Mount mounts core at mountpoint and starts serving it; it returns once
// the kernel has the mount. Unmount it with Server.Unmount, then Close the
// core.
func Mount(mountpoint string, core *fs.FS, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxWrite == 0 {
		opts.MaxWrite = 1 << 20
	}
	m := &mount{core: core, log: opts.Logger, opts: opts}
	neg := negativeTimeout
	mo := fuse.MountOptions{
		AllowOther:   opts.AllowOther,
		FsName:       "dvfs",
		Name:         "dvfs",
		Debug:        opts.Debug,
		Logger:       slog.NewLogLogger(opts.Logger.Handler(), slog.LevelDebug),
		MaxWrite:     opts.MaxWrite,
		MaxReadAhead: opts.MaxWrite,
		// The kernel caches data until dvfs says otherwise, and dvfs never
		// needs to: templates are immutable and clones change only
		// through this mount. Without this, every mtime change seen in a
		// GETATTR would drop a clone file's cached pages.
		ExplicitDataCacheControl: true,
		// ENOSYS for xattrs: the kernel stops asking, which saves a
		// getxattr(security.capability) before every write.
		DisableXAttrs: true,
	}
	// As root, mount(2) directly, without needing fusermount; go-fuse
	// falls back to fusermount when that fails.
	mo.DirectMount = os.Geteuid() == 0
	// Device nodes and set-user-ID bits in a clone are entries a user
	// (or a hostile client uploading a generation) controls: they never
	// open a device or grant privileges here.
	mo.Options = append(mo.Options, "nodev", "nosuid")
	if opts.AllowOther {
		mo.Options = append(mo.Options, "default_permissions")
	}
	if opts.CloneCache == CacheWriteback {
		mo.ExtraCapabilities |= fuse.CAP_WRITEBACK_CACHE
	}
	root := &node{m: m, core: core.Root()}
	srv, err := gofs.Mount(mountpoint, root, &gofs.Options{
		MountOptions:    mo,
		NegativeTimeout: &neg,
		NullPermissions: true,
		// No UID/GID: go-fuse would show every file of owner 0 as
		// theirs, and a template published by root must show as root's
		// to a user who mounts it. The core gives every entry its owner.
		Logger: mo.Logger,
	})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	if opts.ReadAhead == 0 {
		opts.ReadAhead = DefaultReadAhead
	}
	if opts.ReadAhead > 0 {
		if err := fs.SetReadAhead(mountpoint, opts.ReadAhead); err != nil {
			m.log.Warn("the kernel's readahead stays at its default; sequential reads are slower", "err", err)
		}
	}
	return &Server{srv: srv, mountpoint: mountpoint}, nil
}

// Unmount unmounts, retrying while the mount is busy, and waits for the
// serving goroutines to end.
func (s *Server) Unmount() error {
	var err error
	for try := 0; try < 10; try++ {
		if err = s.srv.Unmount(); err == nil {
			return nil
		}
		time.Sleep(time.Duration(try+1) * 50 * time.Millisecond)
	}
	return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
}

// Wait blocks until the filesystem is unmounted.
func (s *Server) Wait() { s.srv.Wait() }
