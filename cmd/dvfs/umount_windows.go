package main

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/sys/windows"
)

// unmount asks the mount process, on its status socket, to end the
// mount: no other process can end a WinFsp mount, so the mount calls
// WinFsp's unmount itself, then flushes and syncs as on Ctrl+C, while
// dvfs umount waits for it. A mount ended otherwise (log off,
// Stop-ScheduledTask) keeps what a crash keeps: what the VM had synced,
// which syncs at the next mount.
func unmount(mp string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := requestUnmount(ctx, statusSocket(mp)); err != nil {
		return fmt.Errorf("unmount %s: %w", mp, err)
	}
	return nil
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
