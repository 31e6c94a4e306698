// Package manifest describes one version of a tree of files as lists of
// block IDs, and encodes it in a stable, signed binary form.
//
// A template version (and later a clone generation) is a Manifest. The
// server signs every manifest it commits with its ed25519 key; workstations
// trust that key and accept a block only when a signed manifest names it.
package manifest

import (
	"io/fs"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Kind says what a manifest describes.
type Kind uint8

const (
	// KindTemplate is a version of a read-only template.
	KindTemplate Kind = 1
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
	// Files lists the tree, sorted by Path, directories before what they
	// hold (sorting by path gives that).
	Files []File
}

// File is one entry of the tree.
type File struct {
	// Path is slash-separated and relative to the root, without "." or
	// ".." elements; the root itself is not listed.
	Path string
	// Mode holds the type bits (directory, symlink, or none for a regular
	// file) and the permission bits.
	Mode fs.FileMode
	// Size is the length of a regular file in bytes.
	Size int64
	// MTime is the modification time.
	MTime time.Time
	// Target is a symlink's target.
	Target string
	// Blocks lists a regular file's blocks: ceil(Size/BlockSize) IDs,
	// blockstore.Hole for blocks of zeros.
	Blocks []blockstore.ID
}
