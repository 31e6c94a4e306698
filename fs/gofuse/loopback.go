//go:build linux

package gofuse

import (
	"fmt"
	"os"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountLoopback mounts go-fuse's own loopback of dir at mountpoint: the
// reference the benchmarks (bench/) hold dvfs against. Not for users.
// Without passthrough every read and write goes through the daemon; with
// it, an open file's reads and writes go from the kernel straight to the
// file in dir (FUSE passthrough, Linux 6.9+, as root), which is what a
// mount whose files each had one local backing file could reach.
func MountLoopback(dir, mountpoint string, passthrough bool) (*Server, error) {
	root, err := gofs.NewLoopbackRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("loopback %s: %w", dir, err)
	}
	mo := fuse.MountOptions{
		FsName:      dir,
		Name:        "loopback",
		DirectMount: os.Geteuid() == 0,
	}
	if !passthrough {
		mo.DisabledCapabilities = fuse.CAP_PASSTHROUGH
	}
	srv, err := gofs.Mount(mountpoint, root, &gofs.Options{MountOptions: mo})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	return &Server{srv: srv, mountpoint: mountpoint}, nil
}
