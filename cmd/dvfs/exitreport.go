package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
)

// A mount process reports how it ended in a file beside its pid file, so
// dvfs umount (which is not its parent and cannot see its exit status)
// can tell the admin whether the clones' changes reached the server.
const cleanExit = "clean: every clone change is on the server\n"

// mountExitFile is where the mount at mountpoint reports how it ended.
func mountExitFile(mountpoint string) string {
	return strings.TrimSuffix(mountPIDFile(mountpoint), ".pid") + ".exit"
}

// recordMountExit writes how the mount ended: cleanExit, or the error
// (what is not on the server, and why).
func recordMountExit(path string, err error) {
	text := cleanExit
	if err != nil {
		text = err.Error() + "\n"
	}
	os.WriteFile(path, []byte(text), 0o644)
}

// mountExitError reads what the mount at mountpoint reported when it
// ended: nil for a clean exit, else an error saying what is not on the
// server. A mount that ended without reporting (killed, crashed) may have
// left changes unsynced: that is an error too.
func mountExitError(mountpoint string) error {
	path := mountExitFile(mountpoint)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("the mount process of %s ended without reporting that its clone changes are on the server (killed or crashed?); they stay in the cache and sync at the next mount: run dvfs status there", mountpoint)
	}
	if err != nil {
		return fmt.Errorf("reading how the mount of %s ended: %w", mountpoint, err)
	}
	os.Remove(path)
	if string(b) == cleanExit {
		return nil
	}
	return fmt.Errorf("%s was unmounted, but NOT everything is on the server: %s; the changes stay in the cache and sync at the next mount", mountpoint, strings.TrimSpace(string(b)))
}

// closeJoin closes c and joins its error into *err: a deferred Close whose
// failure must reach the command's exit code.
func closeJoin(err *error, c io.Closer) {
	*err = errors.Join(*err, c.Close())
}
