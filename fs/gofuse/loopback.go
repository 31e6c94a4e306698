//go:build linux

package gofuse

import (
	"fmt"
	"os"

	gofs "github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
)

// MountLoopback mounts go-fuse's own loopback of dir at mountpoint, with
// kernel passthrough off so that every read and write goes through the
// daemon: the reference the benchmarks (bench/) hold dvfs against. Not
// for users.
func MountLoopback(dir, mountpoint string) (*Server, error) {
	root, err := gofs.NewLoopbackRoot(dir)
	if err != nil {
		return nil, fmt.Errorf("loopback %s: %w", dir, err)
	}
	srv, err := gofs.Mount(mountpoint, root, &gofs.Options{MountOptions: fuse.MountOptions{
		FsName:               dir,
		Name:                 "loopback",
		DirectMount:          os.Geteuid() == 0,
		DisabledCapabilities: fuse.CAP_PASSTHROUGH,
	}})
	if err != nil {
		return nil, fmt.Errorf("mount %s: %w", mountpoint, err)
	}
	return &Server{srv: srv, mountpoint: mountpoint}, nil
}
