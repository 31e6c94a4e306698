//go:build !windows

package diskio

import "os"

// syncDir flushes an open directory: fsync of its descriptor.
func syncDir(d *os.File) error { return d.Sync() }
