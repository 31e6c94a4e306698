//go:build !unix && !windows

package writeback

// checkSpace keeps no reserve where statfs is not available.
func (o *outbox) checkSpace(int64) error { return nil }
