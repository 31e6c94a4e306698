//go:build !unix && !windows

package fs

// checkSpace keeps no reserve where statfs is not available.
func (fsys *FS) checkSpace() error { return nil }
