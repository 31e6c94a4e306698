//go:build !windows && !(linux && cgo && fuse3)

package cgofuse

import "github.com/dvfs-project/dvfs/fs"

// Available says whether this binary has the cgofuse adapter.
const Available = false

// Server is a mounted filesystem; this build has none.
type Server struct{}

// Mount fails with ErrUnavailable.
func Mount(mountpoint string, core *fs.FS, opts Options) (*Server, error) {
	return nil, ErrUnavailable
}

// Unmount does nothing.
func (s *Server) Unmount() error { return nil }

// Wait returns at once.
func (s *Server) Wait() {}
