package main

import (
	"fmt"

	"golang.org/x/sys/windows"
)

// unmount cannot end a WinFsp mount from another process yet: the mount
// process ends it itself, flushing and syncing first, when it is
// interrupted (Ctrl+C in its console). A mount ended otherwise (log off,
// Stop-ScheduledTask) keeps what a crash keeps: what the VM had synced,
// which syncs at the next mount.
func unmount(mp string) error {
	return fmt.Errorf("unmount %s: dvfs umount cannot end a mount on Windows yet; press Ctrl+C in the mount's console (it flushes and syncs before it exits)", mp)
}

// alive reports whether process pid is still running.
func alive(pid int) bool {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, uint32(pid))
	if err != nil {
		return false
	}
	defer windows.CloseHandle(h)
	var code uint32
	return windows.GetExitCodeProcess(h, &code) == nil && code == 259 // STILL_ACTIVE
}
