package fs_test

import (
	"os"
	"slices"
	"testing"

	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
)

const root = "clones/alice"

func ls(t *testing.T, fsys *fs.FS, p string) []string {
	t.Helper()
	ents, err := walk(t, fsys, p).(fs.Dir).ReadDir(ctx)
	if err != nil {
		t.Fatal(err)
	}
	return names(ents)
}

func create(t *testing.T, fsys *fs.FS, dir, name string, data []byte) {
	t.Helper()
	_, h, err := dirOf(t, fsys, dir).Create(ctx, name, 0o644, os.O_RDWR|os.O_EXCL)
	if err != nil {
		t.Fatalf("create %s/%s: %v", dir, name, err)
	}
	if len(data) > 0 {
		writeAt(t, h.(fs.WriteHandle), data, 0)
	}
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
}

func TestNamespace(t *testing.T) {
	vmx := fstest.VMEntry(2, "winxp.vmx").Bytes()
	tests := []struct {
		name string
		do   func(t *testing.T, fsys *fs.FS)
		// after lists what the clone's root and logs/ hold afterwards.
		root, logs []string
		// files maps paths to their expected content.
		files map[string]string
	}{
		{
			name:  "create",
			do:    func(t *testing.T, fsys *fs.FS) { create(t, fsys, root, "new.txt", []byte("hello")) },
			root:  []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs", "new.txt", "winxp.nvram", "winxp.vmx"},
			files: map[string]string{"new.txt": "hello"},
		},
		{
			name: "lock directory like VMware's",
			do: func(t *testing.T, fsys *fs.FS) {
				if _, err := dirOf(t, fsys, root).Mkdir(ctx, "disk.vmdk.lck", 0o755); err != nil {
					t.Fatal(err)
				}
				create(t, fsys, root+"/disk.vmdk.lck", "M12345.lck", []byte("lock"))
				isErr(t, "rmdir non-empty", dirOf(t, fsys, root).Rmdir(ctx, "disk.vmdk.lck"), fs.ErrNotEmpty)
				if err := dirOf(t, fsys, root+"/disk.vmdk.lck").Unlink(ctx, "M12345.lck"); err != nil {
					t.Fatal(err)
				}
				if err := dirOf(t, fsys, root).Rmdir(ctx, "disk.vmdk.lck"); err != nil {
					t.Fatal(err)
				}
			},
			root: []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs", "winxp.nvram", "winxp.vmx"},
		},
		{
			name: "unlink base files and rmdir a base directory",
			do: func(t *testing.T, fsys *fs.FS) {
				d := dirOf(t, fsys, root)
				for _, n := range []string{"disk.vmdk", "current.vmdk", "empty"} {
					if err := d.Unlink(ctx, n); err != nil {
						t.Fatal(err)
					}
				}
				isErr(t, "unlink a directory", d.Unlink(ctx, "logs"), fs.ErrIsDir)
				isErr(t, "rmdir a file", d.Rmdir(ctx, "winxp.vmx"), fs.ErrNotDir)
				isErr(t, "unlink missing", d.Unlink(ctx, "disk.vmdk"), fs.ErrNotExist)
				if err := dirOf(t, fsys, root+"/logs").Unlink(ctx, "vmware.log"); err != nil {
					t.Fatal(err)
				}
				if err := d.Rmdir(ctx, "logs"); err != nil {
					t.Fatal(err)
				}
			},
			root: []string{"big.vmdk", "winxp.nvram", "winxp.vmx"},
		},
		{
			name: "rename over an existing file",
			do: func(t *testing.T, fsys *fs.FS) {
				create(t, fsys, root, "winxp.vmx.tmp", []byte("new vmx"))
				d := dirOf(t, fsys, root)
				if err := d.Rename(ctx, "winxp.vmx.tmp", d, "winxp.vmx", 0); err != nil {
					t.Fatal(err)
				}
				isErr(t, "noreplace", d.Rename(ctx, "empty", d, "winxp.vmx", fs.RenameNoReplace), fs.ErrExist)
			},
			root:  []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs", "winxp.nvram", "winxp.vmx"},
			files: map[string]string{"winxp.vmx": "new vmx"},
		},
		{
			name: "rename a base file into a directory and back out",
			do: func(t *testing.T, fsys *fs.FS) {
				d, logs := dirOf(t, fsys, root), dirOf(t, fsys, root+"/logs")
				if err := d.Rename(ctx, "winxp.vmx", logs, "old.vmx", 0); err != nil {
					t.Fatal(err)
				}
				if err := logs.Rename(ctx, "vmware.log", d, "vmware-0.log", 0); err != nil {
					t.Fatal(err)
				}
			},
			root:  []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs", "vmware-0.log", "winxp.nvram"},
			logs:  []string{"old.vmx"},
			files: map[string]string{"logs/old.vmx": string(vmx)},
		},
		{
			name: "rename directories",
			do: func(t *testing.T, fsys *fs.FS) {
				d := dirOf(t, fsys, root)
				if _, err := d.Mkdir(ctx, "empty-dir", 0o755); err != nil {
					t.Fatal(err)
				}
				isErr(t, "dir over file", d.Rename(ctx, "empty-dir", d, "winxp.vmx", 0), fs.ErrNotDir)
				isErr(t, "file over dir", d.Rename(ctx, "winxp.vmx", d, "empty-dir", 0), fs.ErrIsDir)
				isErr(t, "dir over non-empty dir", d.Rename(ctx, "empty-dir", d, "logs", 0), fs.ErrNotEmpty)
				isErr(t, "dir into itself", d.Rename(ctx, "logs", dirOf(t, fsys, root+"/logs"), "sub", 0), fs.ErrInvalid)
				if err := d.Rename(ctx, "logs", d, "empty-dir", 0); err != nil {
					t.Fatal(err)
				}
				if err := d.Rename(ctx, "empty-dir", d, "logs2", 0); err != nil {
					t.Fatal(err)
				}
			},
			root:  []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs2", "winxp.nvram", "winxp.vmx"},
			files: map[string]string{"logs2/vmware.log": string(fstest.VMEntry(2, "logs/vmware.log").Bytes())},
		},
		{
			name: "symlink",
			do: func(t *testing.T, fsys *fs.FS) {
				if _, err := dirOf(t, fsys, root).Symlink(ctx, "winxp.vmx", "link"); err != nil {
					t.Fatal(err)
				}
			},
			root: []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "link", "logs", "winxp.nvram", "winxp.vmx"},
		},
		{
			name: "create over an existing name",
			do: func(t *testing.T, fsys *fs.FS) {
				_, _, err := dirOf(t, fsys, root).Create(ctx, "winxp.vmx", 0o644, os.O_RDWR|os.O_EXCL)
				isErr(t, "O_EXCL", err, fs.ErrExist)
				_, err = dirOf(t, fsys, root).Mkdir(ctx, "logs", 0o755)
				isErr(t, "mkdir", err, fs.ErrExist)
				_, h, err := dirOf(t, fsys, root).Create(ctx, "winxp.vmx", 0o644, os.O_RDWR|os.O_TRUNC)
				if err != nil {
					t.Fatal(err)
				}
				h.Release(ctx)
				for _, bad := range []string{"", ".", "..", "a/b"} {
					_, err = dirOf(t, fsys, root).Mkdir(ctx, bad, 0o755)
					isErr(t, "bad name", err, fs.ErrInvalid)
				}
			},
			root:  []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs", "winxp.nvram", "winxp.vmx"},
			files: map[string]string{"winxp.vmx": ""},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			fsys := e.mount(t)
			tc.do(t, fsys)
			check := func(when string) {
				if got := ls(t, fsys, root); !slices.Equal(got, tc.root) {
					t.Fatalf("%s: root holds %q, want %q", when, got, tc.root)
				}
				if tc.logs != nil {
					if got := ls(t, fsys, root+"/logs"); !slices.Equal(got, tc.logs) {
						t.Fatalf("%s: logs holds %q, want %q", when, got, tc.logs)
					}
				}
				for p, want := range tc.files {
					sameBytes(t, when+" "+p, readAll(t, fsys, root+"/"+p), []byte(want))
				}
				if got := ls(t, fsys, "templates/winxp"); !slices.Equal(got, []string{"big.vmdk", "current.vmdk", "disk.vmdk", "empty", "logs", "winxp.nvram", "winxp.vmx"}) {
					t.Fatalf("%s: the template changed: %q", when, got)
				}
			}
			check("before remount")
			// Namespace changes are durable at once: remount without Close.
			fsys = e.mount(t)
			check("after remount")
		})
	}
}

func TestUnlinkedWhileOpen(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	h := openW(t, fsys, root+"/winxp.nvram")
	want := fstest.VMEntry(2, "winxp.nvram").Bytes()
	if err := dirOf(t, fsys, root).Unlink(ctx, "winxp.nvram"); err != nil {
		t.Fatal(err)
	}
	sameBytes(t, "unlinked, base", readAt(t, h, 0, 100000), want)
	writeAt(t, h, []byte("still here"), 3)
	copy(want[3:], "still here")
	sameBytes(t, "unlinked, written", readAt(t, h, 0, 100000), want)
	if err := h.Sync(ctx, false); err != nil {
		t.Fatal(err)
	}
	// A new file of the same name is another file.
	create(t, fsys, root, "winxp.nvram", []byte("new"))
	sameBytes(t, "new file", readAll(t, fsys, root+"/winxp.nvram"), []byte("new"))
	sameBytes(t, "unlinked, after create", readAt(t, h, 0, 100000), want)
	if err := h.Release(ctx); err != nil {
		t.Fatal(err)
	}
	ents, _ := os.ReadDir(e.state + "/alice")
	if len(ents) != 1 {
		t.Fatalf("%d data files left, want 1 (the new file's)", len(ents))
	}
	fsys = e.mount(t)
	sameBytes(t, "after remount", readAll(t, fsys, root+"/winxp.nvram"), []byte("new"))
}

func TestSetAttr(t *testing.T) {
	e := newEnv(t)
	fsys := e.mount(t)
	n := walk(t, fsys, root+"/winxp.vmx").(fs.Setter)
	mode := os.FileMode(0o600)
	when := walk(t, fsys, root+"/disk.vmdk")
	a0, _ := when.Attr(ctx)
	a, err := n.SetAttr(ctx, fs.SetAttr{Mode: &mode, MTime: &a0.MTime})
	if err != nil {
		t.Fatal(err)
	}
	if a.Mode != 0o600 || !a.MTime.Equal(a0.MTime) {
		t.Fatalf("attr after SetAttr: %+v", a)
	}
	d := walk(t, fsys, root+"/logs").(fs.Setter)
	dm := os.FileMode(0o700)
	if _, err := d.SetAttr(ctx, fs.SetAttr{Mode: &dm}); err != nil {
		t.Fatal(err)
	}
	var sz int64 = 5
	_, err = d.SetAttr(ctx, fs.SetAttr{Size: &sz})
	isErr(t, "truncate a directory", err, fs.ErrIsDir)
	if err := fsys.Close(ctx); err != nil {
		t.Fatal(err)
	}
	fsys = e.mount(t)
	a, _ = walk(t, fsys, root+"/winxp.vmx").Attr(ctx)
	if a.Mode != 0o600 || !a.MTime.Equal(a0.MTime) {
		t.Fatalf("attr after remount: %+v", a)
	}
	a, _ = walk(t, fsys, root+"/logs").Attr(ctx)
	if a.Mode != os.ModeDir|0o700 {
		t.Fatalf("dir attr after remount: %+v", a)
	}
}
