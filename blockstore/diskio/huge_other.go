//go:build !linux

package diskio

// adviseHuge does nothing where the kernel takes no MADV_HUGEPAGE advice
// (Windows gives large pages only to processes holding
// SeLockMemoryPrivilege, through VirtualAlloc, not to Go's heap): the
// buffer is still aligned and works the same.
func adviseHuge([]byte) {}
