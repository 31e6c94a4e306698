package fs

import (
	"context"
	iofs "io/fs"
	"time"
)

// Limits of the names and sizes a clone accepts.
const (
	// MaxNameLen bounds one name, as NAME_MAX.
	MaxNameLen = 255
	// MaxFileSize bounds a clone file's size: 4 TiB, past any virtual disk
	// a lab runs, and a bitmap of at most 8 MiB at 64 KiB blocks.
	MaxFileSize = 4 << 40
)

// Node is one entry of the tree. What else it can do is found by type
// assertion on the interfaces below, as with io/fs: a template node has no
// MutableDir or Setter, so an adapter answers writes to it with EROFS.
type Node interface {
	// Attr returns the node's attributes.
	Attr(ctx context.Context) (Attr, error)
}

// Attr describes a node, as stat(2) does.
type Attr struct {
	// Ino is unique among the nodes of one FS and stable for the life of
	// the FS (a clone file keeps its Ino across renames).
	Ino uint64
	// Mode holds the type and permission bits.
	Mode iofs.FileMode
	// Size is a regular file's length, a symlink's target length.
	Size int64
	// Blocks is the space taken, in 512-byte units.
	Blocks int64
	// Nlink is the number of links (directories: 2 plus subdirectories).
	Nlink uint32
	// MTime is the modification time, ATime the access time, CTime the
	// status change time.
	MTime, ATime, CTime time.Time
	// UID and GID own the node, as this workstation numbers users (after
	// Config.IDMap).
	UID, GID uint32
	// Rdev is a device node's device number (Linux form); 0 otherwise.
	Rdev uint64
	// Immutable says the node and, for a directory, its entries never
	// change: an adapter may cache them without limit.
	Immutable bool
}

// DirEntry is one entry of a directory listing.
type DirEntry struct {
	// Name is the entry's name in its directory.
	Name string
	// Mode holds the type bits.
	Mode iofs.FileMode
	// Ino is the node's Attr.Ino.
	Ino uint64
}

// Dir is a directory.
type Dir interface {
	Node
	// Lookup returns the child called name, or an error wrapping
	// ErrNotExist.
	Lookup(ctx context.Context, name string) (Node, error)
	// ReadDir lists the children, sorted by name.
	ReadDir(ctx context.Context) ([]DirEntry, error)
}

// RenameFlags are renameat2's flags.
type RenameFlags uint32

const (
	// RenameNoReplace fails with ErrExist when the new name is taken.
	RenameNoReplace RenameFlags = 1 << 0
	// RenameExchange swaps the two entries (not supported).
	RenameExchange RenameFlags = 1 << 1
)

// MutableDir is a directory whose entries can change: every change is
// durable when the method returns.
type MutableDir interface {
	Dir
	// Create makes a regular file and opens it with flags (os.O_*).
	Create(ctx context.Context, name string, mode iofs.FileMode, flags int) (Node, Handle, error)
	// Mkdir makes a directory.
	Mkdir(ctx context.Context, name string, mode iofs.FileMode) (Node, error)
	// Symlink makes a symbolic link to target.
	Symlink(ctx context.Context, target, name string) (Node, error)
	// Mknod makes a FIFO, a socket or a device node (mode's type bits;
	// rdev is a device's number). They are entries only: the FS never
	// opens them (the kernel serves a FIFO or socket itself, and an
	// adapter mounts with nodev).
	Mknod(ctx context.Context, name string, mode iofs.FileMode, rdev uint64) (Node, error)
	// Link makes name another name of target, a non-directory of the same
	// clone (a hard link): ErrCrossDevice for a node of another tree,
	// ErrPermission for a directory.
	Link(ctx context.Context, target Node, name string) (Node, error)
	// Unlink removes a non-directory. Open handles keep working.
	Unlink(ctx context.Context, name string) error
	// Rmdir removes an empty directory.
	Rmdir(ctx context.Context, name string) error
	// Rename moves name to newName in newDir, replacing what is there
	// (unless RenameNoReplace), as rename(2).
	Rename(ctx context.Context, name string, newDir MutableDir, newName string, flags RenameFlags) error
}

// Symlink is a symbolic link.
type Symlink interface {
	Node
	// Readlink returns the target.
	Readlink(ctx context.Context) (string, error)
}

// File is a regular file.
type File interface {
	Node
	// Open opens the file with flags (os.O_*). Write access to a
	// read-only file gives ErrReadOnly.
	Open(ctx context.Context, flags int) (Handle, error)
}

// Seeker is a regular file that tells where its data and its holes are
// (lseek's SEEK_DATA and SEEK_HOLE), so copy and backup tools skip what
// a sparse VM disk never wrote. Templates and clones are Seekers.
type Seeker interface {
	File
	// SeekData returns the first offset at or past off where data (hole
	// false) or a hole (hole true) begins; the file ends in a hole at its
	// size. ErrNoData when off is at or past the size, or when data is
	// sought and none follows.
	SeekData(ctx context.Context, off int64, hole bool) (int64, error)
}

// SetAttr is a change of attributes; nil fields stay as they are.
type SetAttr struct {
	// Mode sets the permission bits (the type bits are ignored).
	Mode *iofs.FileMode
	// Size truncates or extends a regular file.
	Size *int64
	// MTime sets the modification time, ATime the access time.
	MTime, ATime *time.Time
	// UID and GID set the owner (local IDs, mapped by Config.IDMap). The
	// FS checks no permission: the adapter's kernel does
	// (default_permissions), as a local filesystem's would.
	UID, GID *uint32
}

// Setter is a node whose attributes can change.
type Setter interface {
	Node
	// SetAttr applies a and returns the new attributes.
	SetAttr(ctx context.Context, a SetAttr) (Attr, error)
}

// Syncer is a node whose pending attribute changes can be made durable
// on their own (fsync of a directory; namespace changes need no sync,
// they are durable when made).
type Syncer interface {
	Node
	// Sync commits the node's pending changes.
	Sync(ctx context.Context) error
}

// Handle is an open regular file. Its methods are safe for concurrent use.
type Handle interface {
	// ReadAt reads into p from off, as pread(2): a short count means end
	// of file; it returns no io.EOF.
	ReadAt(ctx context.Context, p []byte, off int64) (int, error)
	// Release closes the handle.
	Release(ctx context.Context) error
}

// AllocMode holds fallocate(2)'s mode bits, with Linux's values.
type AllocMode uint32

const (
	// AllocKeepSize leaves the file size as it is.
	AllocKeepSize AllocMode = 0x01
	// AllocPunchHole makes the range read as zeros (with AllocKeepSize).
	AllocPunchHole AllocMode = 0x02
	// AllocZeroRange makes the range read as zeros.
	AllocZeroRange AllocMode = 0x10
)

// WriteHandle is a handle on a writable file.
type WriteHandle interface {
	Handle
	// WriteAt writes p at off, as pwrite(2).
	WriteAt(ctx context.Context, p []byte, off int64) (int, error)
	// Sync makes everything written so far durable: data, then metadata.
	// dataOnly (fdatasync) does the same here.
	Sync(ctx context.Context, dataOnly bool) error
	// Allocate is fallocate(2): mode 0 extends the size, AllocKeepSize
	// alone does nothing, AllocPunchHole and AllocZeroRange zero a range.
	Allocate(ctx context.Context, off, length int64, mode AllocMode) error
}

// Statfs describes the space behind the mount, as statfs(2).
type Statfs struct {
	// BlockSize is the unit of the counts below.
	BlockSize int64
	// Blocks, Free and Avail count all, free, and free-to-users blocks of
	// the disk holding the overlays.
	Blocks, Free, Avail uint64
	// Files and FilesFree count inodes of that disk.
	Files, FilesFree uint64
	// NameLen is the longest name.
	NameLen int64
}
