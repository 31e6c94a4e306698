// Package manifest describes one version of a tree of files as lists of
// block IDs, and encodes it in a stable, signed binary form.
//
// A template version (and later a clone generation) is a Manifest. The
// server signs every manifest it commits with its ed25519 key; workstations
// trust that key and accept a block only when a signed manifest names it.
//
// Validate states the rules a manifest keeps (validate.go). MarshalBinary
// and Unmarshal convert it to and from its one binary form (encode.go), and
// Sign and Open wrap that form in a signed envelope (sign.go). The package
// does no I/O.
package manifest

import (
	"fmt"
	"io/fs"
	"iter"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Kind says what a manifest describes.
type Kind uint8

const (
	// KindTemplate is a version of a read-only template.
	KindTemplate Kind = 1
	// KindClone is a generation of a clone: Name is the clone's name,
	// Version its generation and Parent the generation it was made from.
	KindClone Kind = 2
)

// Manifest is one version of a tree of files.
type Manifest struct {
	// Kind says what the manifest describes.
	Kind Kind
	// Name is the template's name.
	Name string
	// Version numbers the versions of Name from 1; 0 in a manifest that is
	// not yet committed.
	Version uint64
	// Parent is the version this one was made from (0: none).
	Parent uint64
	// Created is when the server committed the version.
	Created time.Time
	// BlockSize is the size of every block but a file's last.
	BlockSize uint32
	// Owners says UID and GID of every entry are meaningful. A format-1
	// manifest has none: a reader shows its entries as it shows new ones
	// (the mounting user's).
	Owners bool
	// Files lists the tree, sorted by Path, directories before what they
	// hold (sorting by path gives that).
	Files []File
}

// File is one entry of the tree.
type File struct {
	// Path is slash-separated and relative to the root, without "." or
	// ".." elements; the root itself is not listed.
	Path string
	// Mode holds the type bits and the permission bits (fs.ModePerm,
	// fs.ModeSetuid, fs.ModeSetgid, fs.ModeSticky). The type bits are none
	// for a regular file, fs.ModeDir, fs.ModeSymlink, fs.ModeNamedPipe,
	// fs.ModeSocket, fs.ModeDevice for a block device, or
	// fs.ModeDevice|fs.ModeCharDevice for a character device.
	Mode fs.FileMode
	// Size is the length of a regular file in bytes; 0 for named pipes,
	// sockets and devices.
	Size int64
	// MTime is the modification time.
	MTime time.Time
	// ATime is the access time; the zero Time when not kept (format 1).
	ATime time.Time
	// UID and GID own the entry, when the manifest's Owners is set (else
	// both 0).
	UID, GID uint32
	// Rdev is a device node's device number (Linux form, as unix.Mkdev
	// gives); 0 for other entries.
	Rdev uint64
	// Target is a symlink's target.
	Target string
	// Link, when not empty, makes this entry another name (a hard link) of
	// the entry at path Link, which is listed earlier, is not a directory
	// and is not itself a link. Every other field but Path equals that
	// entry's (Blocks shares its slice after Unmarshal).
	Link string
	// Blocks lists a regular file's blocks: ceil(Size/BlockSize) IDs,
	// blockstore.Hole for blocks of zeros.
	Blocks []blockstore.ID
}

// Lookup returns the entry at path (in the form File.Path uses), by binary
// search. The *File points into m.Files. m must be sorted, as Validate
// requires.
func (m *Manifest) Lookup(path string) (*File, bool) {
	lo, hi := 0, len(m.Files)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if m.Files[mid].Path < path {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	if lo < len(m.Files) && m.Files[lo].Path == path {
		return &m.Files[lo], true
	}
	return nil, false
}

// BlockIDs yields every distinct block ID that m names, holes left out, in
// the order they first appear (files by path, blocks by offset), so a caller
// that fetches or uploads them in that order reads each file front to back.
// It is what the store must hold for this version: the input of
// Checker.Missing and the live set of a garbage collection. Hard links are
// skipped: their blocks are their file's. The iteration keeps a set of the
// IDs seen so far (about 64 bytes per distinct block).
func (m *Manifest) BlockIDs() iter.Seq[blockstore.ID] {
	return func(yield func(blockstore.ID) bool) {
		seen := make(map[blockstore.ID]struct{})
		for i := range m.Files {
			if m.Files[i].Link != "" {
				continue
			}
			for _, id := range m.Files[i].Blocks {
				if id.IsHole() {
					continue
				}
				if _, dup := seen[id]; dup {
					continue
				}
				seen[id] = struct{}{}
				if !yield(id) {
					return
				}
			}
		}
	}
}

// BlockRange returns the byte range of block i of the regular file f in a
// manifest of the given block size: it starts at off and is n bytes long,
// blockSize for every block but the last, which ends at f.Size. It panics
// when i is not an index of f.Blocks, like indexing the slice would.
func (f *File) BlockRange(blockSize uint32, i int) (off int64, n int) {
	if i < 0 || i >= len(f.Blocks) {
		panic(fmt.Sprintf("manifest: block %d of %q out of range [0,%d)", i, f.Path, len(f.Blocks)))
	}
	off = int64(i) * int64(blockSize)
	return off, int(min(int64(blockSize), f.Size-off))
}

// Stats counts what a manifest holds. A hard link counts in HardLinks
// only: its file, blocks and bytes are counted once, at its file's entry.
type Stats struct {
	// Files counts regular files.
	Files int
	// Dirs counts directories.
	Dirs int
	// Symlinks counts symbolic links.
	Symlinks int
	// Specials counts named pipes, sockets and devices.
	Specials int
	// HardLinks counts the entries with Link set.
	HardLinks int
	// Bytes is the sum of the regular files' sizes.
	Bytes int64
	// Blocks counts the block IDs listed, holes and repeats included.
	Blocks int
	// DistinctBlocks counts the distinct non-hole IDs: the blocks a store
	// must hold for this version.
	DistinctBlocks int
	// HoleBlocks counts the holes (blocks of zeros, stored nowhere).
	HoleBlocks int
}

// Stats counts the entries, bytes and blocks of m.
func (m *Manifest) Stats() Stats {
	var s Stats
	for i := range m.Files {
		f := &m.Files[i]
		if f.Link != "" {
			s.HardLinks++
			continue
		}
		switch f.Mode.Type() {
		case 0:
			s.Files++
			s.Bytes += f.Size
		case fs.ModeDir:
			s.Dirs++
		case fs.ModeSymlink:
			s.Symlinks++
		default:
			s.Specials++
		}
		s.Blocks += len(f.Blocks)
		for _, id := range f.Blocks {
			if id.IsHole() {
				s.HoleBlocks++
			}
		}
	}
	for range m.BlockIDs() {
		s.DistinctBlocks++
	}
	return s
}
