// Package gofuse mounts a dvfs filesystem core (package fs) on Linux
// through go-fuse. It only translates: kernel requests become calls on the
// core's Node and Handle interfaces, and the core's errors become errnos
// through one table (errno.go). It is the only package that imports
// go-fuse, under the alias gofs, since the project has its own fs.
//
// Caching (see Mount): template nodes are immutable, so their data stays
// in the kernel's page cache (FOPEN_KEEP_CACHE) and their attributes and
// entries are cached for an hour. Clone files use the kernel's writeback
// cache by default: this mount is the only way in to a clone's overlay,
// so the kernel's cached pages and attributes are never stale, and small
// writes are gathered into large ones before they reach dvfs.
//
// The serving process must not fork or exec while it serves (go-fuse's
// fs/api.go lists the deadlocks), nor mmap files of its own mount.
package gofuse
