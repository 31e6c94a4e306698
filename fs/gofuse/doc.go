//go:build linux

// Package gofuse mounts a dvfs filesystem core (package fs) on Linux
// through go-fuse. It only translates: kernel requests become calls on the
// core's Node and Handle interfaces, and the core's errors become errnos
// through one table (errno.go). It is the only package that imports
// go-fuse, under the alias gofs, since the project has its own fs.
//
// Caching: template nodes are immutable, so their data stays in the
// kernel's page cache (FOPEN_KEEP_CACHE) and their attributes and entries
// are cached for an hour. Clone files use the kernel's writeback cache
// (CacheWriteback) with FOPEN_KEEP_CACHE: this mount is the only way in
// to a clone's overlay, so the kernel's pages and attributes are never
// stale, and small writes reach dvfs gathered into large requests. Shared
// writable mmap, O_DIRECT (the kernel sends those reads and writes
// straight through) and fsync (the kernel writes its dirty pages back
// first) all work, as the mount tests check.
//
// BenchmarkCloneIO, ops/s, median of 3, the benchmark process serving
// and doing the I/O on this project's 2-core machine, 64 MiB file of
// local blocks:
//
//	                        native  writeback  writethrough  direct
//	4 KiB random write (a)  184k    176k       30k           25k
//	4 KiB random read (b)   378k    426k       406k          26k
//	4 KiB write+fdatasync   2.4k    2.2k       3.2k          2.5k
//	1 MiB seq. write MB/s   16.8k   2.2k       1.7k          3.4k
//
//	(a) timed with the fsync at the end
//	(b) warm page cache; "direct" shows the cost of a request, which the
//	    issue puts at ~17k/s for a plain go-fuse loopback
//
// Writeback brings small writes from 0.16 of native (writethrough) to
// 0.96 and keeps reads in the page cache; fdatasync-bound writes are
// bound by the disk either way. Direct I/O writes large sequential
// requests fastest but sends every small read to dvfs and breaks shared
// mmap, so it is only an option.
//
// The serving process must not fork or exec while it serves (go-fuse's
// fs/api.go lists the deadlocks), nor mmap files of its own mount.
package gofuse
