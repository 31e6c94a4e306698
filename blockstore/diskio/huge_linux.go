package diskio

import "golang.org/x/sys/unix"

// adviseHuge asks the kernel to back b with transparent huge pages.
// Advice only: without it the buffer works the same, only slower to touch
// the first time.
func adviseHuge(b []byte) { _ = unix.Madvise(b, unix.MADV_HUGEPAGE) }
