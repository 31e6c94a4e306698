//go:build unix || windows

package writeback

import "github.com/dvfs-project/dvfs/blockstore/diskio"

// checkSpace refuses to write n more bytes when that would leave less than
// the reserve free on the outbox's disk: ENOSPC, so the seal fails (and
// is retried) before the disk is too full for the stores that map their
// files.
func (o *outbox) checkSpace(n int64) error { return diskio.CheckFree(o.dir, n, o.reserve) }
