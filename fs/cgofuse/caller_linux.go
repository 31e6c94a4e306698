//go:build cgo && fuse3

package cgofuse

import (
	"context"

	"github.com/winfsp/cgofuse/fuse"

	"github.com/dvfs-project/dvfs/fs"
)

// caller is a context carrying the requesting user for the core: what
// they create is theirs.
func caller() context.Context {
	uid, gid, _ := fuse.Getcontext()
	return fs.WithCaller(context.Background(), fs.Owner{UID: uid, GID: gid})
}
