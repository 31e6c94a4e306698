//go:build cgo && fuse3

package cgofuse

import "syscall"

// hostErrno is en as libfuse wants it: on Linux, the same number.
func hostErrno(en syscall.Errno) int { return int(en) }
