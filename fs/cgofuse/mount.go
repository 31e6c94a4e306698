//go:build windows || (linux && cgo && fuse3)

package cgofuse

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync"
	"time"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/dvfs-project/dvfs/fs"
)

// Available says whether this binary has the cgofuse adapter.
const Available = true

// Server is a mounted filesystem.
type Server struct {
	host       *fuse.FileSystemHost
	fsys       *fsys
	mountpoint string
	done       chan struct{} // closed when the host's Mount returns
	ok         bool          // what Mount returned, once done is closed
}

// Mount mounts core at mountpoint and starts serving it; it returns once
// the filesystem is ready (cgofuse's Init). Unmount it with
// Server.Unmount, then Close the core.
func Mount(mountpoint string, core *fs.FS, opts Options) (*Server, error) {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	f := &fsys{core: core, log: opts.Logger, ready: make(chan struct{}), handles: map[uint64]*handle{},
		fromWinFsp: runtime.GOOS == "windows" && core.MapsNames()}
	host := fuse.NewFileSystemHost(f)
	// The core's inode numbers, as go-fuse shows them: hard links share
	// one, and getdents shows each entry's.
	host.SetUseIno(true)
	// WinFsp then compares names case-insensitively itself and asks
	// Getpath for their case; libfuse ignores it.
	host.SetCapCaseInsensitive(core.CaseInsensitive())
	s := &Server{host: host, fsys: f, mountpoint: mountpoint, done: make(chan struct{})}
	args := mountArgs(opts)
	go func() {
		defer close(s.done)
		s.ok = host.Mount(mountpoint, args)
	}()
	select {
	case <-f.ready:
	case <-s.done:
		return nil, fmt.Errorf("mount %s: cgofuse could not mount (options %q; libfuse's reason is on stderr)", mountpoint, args)
	}
	waitVisible(mountpoint, opts.Logger)
	if opts.ReadAhead == 0 {
		opts.ReadAhead = fs.DefaultReadAhead
	}
	if opts.ReadAhead > 0 && runtime.GOOS == "linux" {
		if err := fs.SetReadAhead(mountpoint, opts.ReadAhead); err != nil {
			opts.Logger.Warn("the kernel's readahead stays at its default; sequential reads are slower", "err", err)
		}
	}
	return s, nil
}

// Unmount unmounts, retrying while the mount is busy, and waits for the
// serving threads to end.
func (s *Server) Unmount() error {
	var err error
	for try := 0; try < 10; try++ {
		select {
		case <-s.done: // unmounted already (cgofuse unmounts on SIGINT and SIGTERM)
			return nil
		default:
		}
		if err = s.unmount(); err == nil {
			<-s.done
			return nil
		}
		time.Sleep(time.Duration(try+1) * 50 * time.Millisecond)
	}
	return fmt.Errorf("unmount %s: %w", s.mountpoint, err)
}

// Wait blocks until the filesystem is unmounted.
func (s *Server) Wait() { <-s.done }

// fsys is what cgofuse calls: path-based operations on the core.
type fsys struct {
	fuse.FileSystemBase
	core  *fs.FS
	log   *slog.Logger
	ready chan struct{} // closed by Init
	once  sync.Once
	// fromWinFsp: paths come from WinFsp, which maps forbidden
	// characters itself, to a core that does too.
	fromWinFsp bool

	mu      sync.RWMutex // guards the fields below
	handles map[uint64]*handle
	next    uint64
}
