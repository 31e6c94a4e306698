//go:build !unix && !windows

package diskio

// CheckFree keeps no reserve where statfs is not available.
func CheckFree(dir string, need, reserve int64) error { return nil }
