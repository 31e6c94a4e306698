// Package cgofuse mounts a dvfs filesystem core (package fs) through
// cgofuse: libfuse3's high-level API on Linux, WinFsp's FUSE layer on
// Windows. It is the only package that imports cgofuse, and it only
// translates: the path of each call is walked in the core (fs.FS.Walk),
// open files are numbered handles, and the core's errors become negative
// errnos through the core's one table (fs.Errno). What the kernel is told
// matches fs/gofuse, the Linux default: nodev and nosuid, the core's inode
// numbers, kept page cache (FOPEN_KEEP_CACHE), default_permissions with
// AllowOther, the same readahead.
//
// Through libfuse3 on Linux, the fstest tables pass as through fs/gofuse
// except where cgofuse v1.6.0 gives no way in (mount_test.go lists them
// with the check names):
//   - no lseek: the kernel answers SEEK_DATA and SEEK_HOLE itself, all
//     data up to the size (copy tools read holes as zeros);
//   - no fallocate: it fails with EOPNOTSUPP (qemu then writes zeros);
//   - libfuse's config is reset at init (hard_remove off, no attribute or
//     entry caching): an unlinked open file shows as .fuse_hiddenN until
//     its last close, and every stat and lookup reaches dvfs;
//   - no writeback cache: each write(2) is a request of its own;
//   - on SIGINT or SIGTERM cgofuse itself detaches the mount at once
//     (MNT_DETACH), busy or not, where fs/gofuse's Unmount refuses a busy
//     mount; open files keep working until closed, then serving ends.
//
// On Linux it needs cgo, the libfuse3 headers (Debian: libfuse3-dev) and
// the build tag fuse3 (cgofuse otherwise compiles against libfuse 2):
// go build -tags fuse3. Built without them, Mount returns ErrUnavailable.
// On Windows it builds without cgo and loads WinFsp's DLL at mount.
//
// The serving process must not fork or exec while it serves, nor mmap
// files of its own mount (as with fs/gofuse).
package cgofuse
