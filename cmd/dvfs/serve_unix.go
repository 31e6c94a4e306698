//go:build unix

package main

import "golang.org/x/sys/unix"

// errServeHere is why dvfs serve refuses to run on this system: nil, the
// server runs on Linux (and builds on the other Unixes).
var errServeHere error

// openFileLimit returns the process's limit of open files, false when
// there is none.
func openFileLimit() (uint64, bool) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil || rl.Cur == unix.RLIM_INFINITY {
		return 0, false
	}
	return uint64(rl.Cur), true
}
