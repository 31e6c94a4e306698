package cgofuse

import (
	"errors"
	"log/slog"
	"os"
	"time"
)

// mountArgs are WinFsp's FUSE options for opts. Not run here (no WinFsp
// on the project's machines): WinFsp maps the mounting user to uid and
// gid -1's owner, and the volume shows as dvfs.
func mountArgs(opts Options) []string {
	args := []string{"-o", "uid=-1,gid=-1,volname=dvfs,FileSystemName=dvfs"}
	if opts.Debug {
		args = append(args, "-d")
	}
	return args
}

// unmount asks WinFsp to stop serving the mount.
func (s *Server) unmount() error {
	if !s.host.Unmount() {
		return errors.New("WinFsp refused the unmount")
	}
	return nil
}

// waitVisible waits, up to 10 s, for the mountpoint to show: WinFsp calls
// init a little before the drive or directory appears (rclone's cmount
// waits the same way), and what the mount's caller does next may need it.
func waitVisible(mountpoint string, log *slog.Logger) {
	p := mountpoint
	if len(p) == 2 && p[1] == ':' {
		p += `\`
	}
	for range 1000 {
		if _, err := os.Stat(p); err == nil {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	log.Warn("the mountpoint did not show within 10s of the mount; going on", "mountpoint", mountpoint)
}
