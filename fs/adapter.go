package fs

// What every adapter needs besides the Node interfaces: a path-based
// adapter's walk, listings with . and .., where changes may happen, and
// access(2) by mode bits. Errors and st_mode have files of their own
// (errno.go, unixmode.go).

import (
	"context"
	"fmt"
	iofs "io/fs"
	"os/user"
	"slices"
	"strconv"
	"strings"
)

// Walk returns the node at p, a slash-separated path from the root ("/"
// and "" are the root), looking up one name at a time as the kernel does
// for a path-based adapter: ErrNotDir where a component is not a
// directory, and each Lookup's own errors (ErrNotExist, ErrNameTooLong).
func (fsys *FS) Walk(ctx context.Context, p string) (Node, error) {
	var n Node = fsys.Root()
	for name := range strings.SplitSeq(p, "/") {
		if name == "" {
			continue
		}
		d, ok := n.(Dir)
		if !ok {
			return nil, fmt.Errorf("%q in %q: %w", name, p, ErrNotDir)
		}
		c, err := d.Lookup(ctx, name)
		if err != nil {
			return nil, err
		}
		n = c
	}
	return n, nil
}

// WalkParent returns the directory holding the last name of p, and that
// name: where a path-based adapter creates, removes or renames. The root
// has no parent (ErrInvalid).
func (fsys *FS) WalkParent(ctx context.Context, p string) (Dir, string, error) {
	p = strings.TrimRight(p, "/")
	i := strings.LastIndexByte(p, '/')
	name := p[i+1:]
	if name == "" {
		return nil, "", fmt.Errorf("the root has no parent: %w", ErrInvalid)
	}
	n, err := fsys.Walk(ctx, p[:max(i, 0)])
	if err != nil {
		return nil, "", err
	}
	d, ok := n.(Dir)
	if !ok {
		return nil, "", fmt.Errorf("parent of %q: %w", p, ErrNotDir)
	}
	return d, name, nil
}

// WithDots returns the listing of directory self (inode number) with
// "." and ".." first, as on a local disk: tools that count a directory's
// entries or walk by getdents expect them. parent is the parent's inode
// number; the mount's root is its own parent.
func WithDots(ents []DirEntry, self, parent uint64) []DirEntry {
	out := make([]DirEntry, 0, len(ents)+2)
	out = append(out, DirEntry{Name: ".", Mode: iofs.ModeDir, Ino: self}, DirEntry{Name: "..", Mode: iofs.ModeDir, Ino: parent})
	return append(out, ents...)
}

// Access masks of access(2).
const (
	AccessRead  = 4
	AccessWrite = 2
	AccessExec  = 1
)

// Permits reports whether caller may access a node with attributes a as
// mask (AccessRead|AccessWrite|AccessExec) asks, by its mode bits: what
// an adapter answers access(2) with when the kernel does not check
// permissions itself (a mount without default_permissions). Root may
// read and write anything, and execute what has an execute bit or is a
// directory.
func Permits(a Attr, caller Owner, mask uint32) bool {
	mask &= 7
	if mask == 0 {
		return true
	}
	perm := uint32(a.Mode.Perm())
	if caller.UID == 0 {
		return mask&AccessExec == 0 || perm&0o111 != 0 || a.Mode.IsDir()
	}
	var bits uint32
	switch {
	case caller.UID == a.UID:
		bits = perm >> 6
	case caller.GID == a.GID:
		bits = perm >> 3
	case (perm>>3)&mask != perm&mask && inGroup(caller.UID, a.GID):
		// The group lookup only matters when the group's and the others'
		// bits differ for mask.
		bits = perm >> 3
	default:
		bits = perm
	}
	return bits&mask == mask
}

// inGroup reports whether user uid is a supplementary member of group gid.
func inGroup(uid, gid uint32) bool {
	u, err := user.LookupId(strconv.FormatUint(uint64(uid), 10))
	if err != nil {
		return false
	}
	gs, err := u.GroupIds()
	return err == nil && slices.Contains(gs, strconv.FormatUint(uint64(gid), 10))
}

// Mutable returns n as a directory whose entries can change: ErrNotDir
// when n is no directory, ErrReadOnly for a template's or the fixed top's.
func Mutable(n Node) (MutableDir, error) {
	if d, ok := n.(MutableDir); ok {
		return d, nil
	}
	if _, ok := n.(Dir); !ok {
		return nil, ErrNotDir
	}
	return nil, ErrReadOnly
}
