//go:build unix

package main

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
)

// unmount asks the kernel to unmount mp; the mount process then flushes
// and exits.
func unmount(mp string) error {
	err := syscall.Unmount(mp, 0)
	if err == nil {
		return nil
	}
	// Not root: the setuid helper of fuse3 may unmount.
	out, ferr := exec.Command("fusermount3", "-u", mp).CombinedOutput()
	if ferr != nil {
		return fmt.Errorf("unmount %s: %w (fusermount3: %s)", mp, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// alive reports whether process pid is still running; an exited process
// its parent has not reaped yet (a zombie) is not.
func alive(pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// The state follows the command name in parentheses.
	if i := strings.LastIndexByte(string(b), ')'); i >= 0 && i+2 < len(b) {
		return b[i+2] != 'Z'
	}
	return true
}
