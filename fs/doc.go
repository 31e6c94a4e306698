// Package fs is dvfs's filesystem core: the tree a workstation mounts and
// the local copy-on-write overlay that makes a clone writable. It imports
// no FUSE library; fs/gofuse translates kernel requests into calls on the
// Node and Handle interfaces declared here, and a Windows adapter can do
// the same.
//
// The tree:
//
//	templates/NAME/           latest version of template NAME, read-only
//	templates/NAME@VERSION/   any version, read-only
//	clones/CLONE/             a user's linked clone, read-write
//
// Template files read their blocks through a BlockReader (holes are zeros);
// nothing about a template ever changes, so an adapter may cache it for
// as long as it likes (Attr.Immutable).
//
// A clone starts as its base manifest (Catalog.Clone). The first time a
// workstation opens it, the whole namespace is copied into a per-clone
// table in Meta, so renames, unlinks and new files are ordinary table
// updates. A regular file's changed blocks live in a sparse local data file
// (StateDir/CLONE/INO.data, each block at its natural offset) with a bitmap
// of the blocks that are local; a block is copied up from the base, whole,
// the first time a write touches it. See overlay.go for the durability
// rules and meta.go for the keys.
package fs
