package main

import (
	"errors"
	"os"
)

// errNotMounted: dvfs umount of a directory nothing is mounted on.
var errNotMounted = errors.New("not mounted")

// removeOwnPIDFile removes the pid file only while it holds this
// process's pid: never a file another mount wrote.
func removeOwnPIDFile(path string, pid string) {
	if b, err := os.ReadFile(path); err == nil && string(b) == pid {
		os.Remove(path)
	}
}
