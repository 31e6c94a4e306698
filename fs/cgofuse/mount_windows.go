package cgofuse

import "errors"

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
