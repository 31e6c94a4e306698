//go:build linux && cgo && fuse3

package main

import "testing"

func init() { e2eBuildFlags = []string{"-tags", "fuse3"} }

// A clone written through the cgofuse adapter and unmounted with dvfs
// umount reads the same through go-fuse on another workstation: the flag
// reaches the adapter, and an unmount from outside flushes and syncs.
func TestCloneMovesFromCgofuse(t *testing.T) {
	cloneMovesBetween(t, []string{"--fuse", "cgofuse"}, []string{"--fuse", "gofuse"})
}
