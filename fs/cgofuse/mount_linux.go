//go:build cgo && fuse3

package cgofuse

import (
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"strings"

	"golang.org/x/sys/unix"
)

// mountArgs are libfuse's options for opts, as fs/gofuse mounts.
func mountArgs(opts Options) []string {
	// Device nodes and set-user-ID bits in a clone are entries a user (or
	// a hostile client uploading a generation) controls: they never open
	// a device or grant privileges here.
	o := []string{"fsname=dvfs", "subtype=dvfs", "nodev", "nosuid"}
	if opts.AllowOther {
		o = append(o, "allow_other", "default_permissions")
	}
	args := []string{"-o", strings.Join(o, ",")}
	if opts.Debug {
		args = append(args, "-d")
	}
	return args
}

// unmount unmounts as go-fuse does, not lazily: a busy mount stays and
// says so. cgofuse's own Unmount detaches (MNT_DETACH) and, not root,
// runs fusermount, which a fuse3-only system lacks.
func (s *Server) unmount() error {
	err := unix.Unmount(s.mountpoint, 0)
	if !errors.Is(err, unix.EPERM) {
		return err
	}
	out, ferr := exec.Command("fusermount3", "-u", s.mountpoint).CombinedOutput()
	if ferr != nil {
		return fmt.Errorf("%w (fusermount3: %s)", err, strings.TrimSpace(string(out)))
	}
	return nil
}

// waitVisible returns at once: libfuse calls init once the kernel has
// the mount.
func waitVisible(mountpoint string, log *slog.Logger) {}
