package fs_test

import (
	"strings"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/fs"
)

// Every way to make a path longer than a manifest takes is refused with
// ErrNameTooLong (ENAMETOOLONG) and leaves the tree as it was: the server
// would refuse the clone's every later generation.
func TestPathLenLimit(t *testing.T) {
	fsys := newEnv(t).mount(t)
	name := strings.Repeat("d", manifest.MaxElemLen)
	// 15 nested 255-byte directories: 3,839 bytes from the clone root.
	p := root
	for range 15 {
		if _, err := dirOf(t, fsys, p).Mkdir(ctx, name, 0o755); err != nil {
			t.Fatal(err)
		}
		p += "/" + name
	}
	deep := dirOf(t, fsys, p)
	if _, err := deep.Mkdir(ctx, name[:254], 0o755); err != nil { // 4,094 bytes
		t.Fatal(err)
	}
	deep2 := dirOf(t, fsys, p+"/"+name[:254])
	if _, _, err := deep2.Create(ctx, "x", 0o644, 0); err != nil {
		t.Fatalf("a path of exactly MaxPathLen bytes: %v", err)
	}
	_, _, cerr := deep2.Create(ctx, "xy", 0o644, 0) // 4,097 bytes
	isErr(t, "create", cerr, fs.ErrNameTooLong)
	_, merr := deep2.Mkdir(ctx, "xy", 0o755)
	isErr(t, "mkdir", merr, fs.ErrNameTooLong)
	_, serr := deep2.Symlink(ctx, "target", "xy")
	isErr(t, "symlink", serr, fs.ErrNameTooLong)

	// A rename of a file to a longer path, and of a directory whose
	// deepest entry would pass the limit.
	top := dirOf(t, fsys, root)
	create(t, fsys, root, "f", []byte("abc"))
	isErr(t, "rename of a file", top.Rename(ctx, "f", deep2, "xy", 0), fs.ErrNameTooLong)
	if _, err := top.Mkdir(ctx, "s", 0o755); err != nil {
		t.Fatal(err)
	}
	create(t, fsys, root+"/s", "inner", nil) // "/inner": 6 bytes below the new name
	isErr(t, "rename of a directory", top.Rename(ctx, "s", deep, name[:251], 0), fs.ErrNameTooLong)
	if err := top.Rename(ctx, "s", deep, name[:250], 0); err != nil {
		t.Fatalf("a rename that ends at exactly MaxPathLen: %v", err)
	}
	long := name[:250]
	for _, q := range []string{root + "/f", p + "/" + long + "/inner"} {
		if _, err := tryWalk(fsys, q); err != nil {
			t.Errorf("%s after the refused renames: %v", q, err)
		}
	}
}
