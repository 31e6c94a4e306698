//go:build linux

package gofuse_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/memstore"
	"github.com/dvfs-project/dvfs/fs"
	"github.com/dvfs-project/dvfs/fs/fstest"
	"github.com/dvfs-project/dvfs/fs/gofuse"
)

// helperEnv names the helper a re-executed test binary runs instead of
// the tests: the processes that mmap, lock, or serve a mount for the
// crash test, apart from the test process that serves.
const helperEnv = "DVFS_GOFUSE_HELPER"

func TestMain(m *testing.M) {
	if h := os.Getenv(helperEnv); h != "" {
		helpers[h](os.Args[len(os.Args)-1])
		os.Exit(0)
	}
	os.Exit(m.Run())
}

var helpers = map[string]func(arg string){
	"mmap":   helperMmap,
	"flock":  helperFlock,
	"fcntl":  helperFcntl,
	"serve":  helperServe,
	"owners": helperOwners,
}

// requireFuse skips the test where FUSE is missing, unless CI is set.
var requireFuse = fstest.RequireFuse

var standardWorld = sync.OnceValues(func() (*fstest.World, error) {
	return fstest.StandardWorld(context.Background())
})

// testMount is a mounted core.
type testMount struct {
	dir   string
	core  *fs.FS
	srv   *gofuse.Server
	meta  blockstore.MetaStore
	state string
}

// mountStandard mounts the standard world on fresh state.
func mountStandard(t testing.TB, opts gofuse.Options) *testMount {
	t.Helper()
	return remount(t, memstore.New(), t.TempDir(), opts)
}

// remount mounts the standard world on the given state under
// t.TempDir(); t.Cleanup unmounts it (retrying) and closes the core.
func remount(t testing.TB, meta blockstore.MetaStore, state string, opts gofuse.Options) *testMount {
	t.Helper()
	return remountWith(t, meta, state, opts, func(*fs.Config) {})
}

// remountWith is remount with edit applied to the core's Config.
func remountWith(t testing.TB, meta blockstore.MetaStore, state string, opts gofuse.Options, edit func(*fs.Config)) *testMount {
	t.Helper()
	w, err := standardWorld()
	if err != nil {
		t.Fatal(err)
	}
	return mountWorld(t, w, meta, state, opts, edit)
}

// mountWorld mounts world w on the given state, as remountWith.
func mountWorld(t testing.TB, w *fstest.World, meta blockstore.MetaStore, state string, opts gofuse.Options, edit func(*fs.Config)) *testMount {
	t.Helper()
	requireFuse(t)
	var err error
	tm := &testMount{dir: t.TempDir(), meta: meta, state: state}
	cfg := fs.Config{Blocks: w.Blocks, Catalog: w.Catalog, Meta: meta, StateDir: state}
	edit(&cfg)
	tm.core, err = fs.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tm.srv, err = gofuse.Mount(tm.dir, tm.core, opts)
	if err != nil {
		tm.core.Close(context.Background())
		t.Fatal(err)
	}
	t.Cleanup(func() { tm.unmount(t) })
	return tm
}

// unmount unmounts and closes the core; it may be called again.
func (tm *testMount) unmount(t testing.TB) {
	t.Helper()
	if tm.srv == nil {
		return
	}
	if err := tm.srv.Unmount(); err != nil {
		t.Errorf("unmount: %v", err)
		unix.Unmount(tm.dir, unix.MNT_DETACH)
	}
	tm.srv = nil
	if err := tm.core.Close(context.Background()); err != nil {
		t.Errorf("close core: %v", err)
	}
}

func (tm *testMount) path(p string) string { return filepath.Join(tm.dir, p) }

// child is a helper process.
type child struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	lines chan string
	once  sync.Once
	err   error
}

// wait closes the child's stdin, which tells it to finish, and waits.
func (c *child) wait() error {
	c.once.Do(func() { c.stdin.Close(); c.err = c.cmd.Wait() })
	return c.err
}

// helper starts this test binary as helper name with arg; its stdout
// lines come on c.lines. The test process serves the mount, so the child
// must not inherit a descriptor of it, nor start in it (go-fuse's
// fs/api.go).
func helper(t *testing.T, name, arg string) *child {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$", arg)
	cmd.Env = append(os.Environ(), helperEnv+"="+name)
	cmd.Stderr = os.Stderr
	c := &child{cmd: cmd, lines: make(chan string, 10)}
	var err error
	if c.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		s := bufio.NewScanner(out)
		for s.Scan() {
			c.lines <- s.Text()
		}
		close(c.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Kill()
		c.wait()
	})
	return c
}

func expectLine(t *testing.T, lines <-chan string, want string) {
	t.Helper()
	select {
	case l, ok := <-lines:
		if !ok || l != want {
			t.Fatalf("helper said %q (open %v), want %q", l, ok, want)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("helper did not say %q", want)
	}
}

// helperMmap maps the file arg shared and writable, writes a pattern
// through the mapping, msyncs and exits.
func helperMmap(arg string) {
	f, err := os.OpenFile(arg, os.O_RDWR, 0)
	check(err)
	st, err := f.Stat()
	check(err)
	m, err := unix.Mmap(int(f.Fd()), 0, int(st.Size()), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED)
	check(err)
	copy(m, mmapPattern(len(m)))
	check(unix.Msync(m, unix.MS_SYNC))
	check(unix.Munmap(m))
	check(f.Close())
	fmt.Println("done")
}

func mmapPattern(n int) []byte {
	p := make([]byte, n)
	fstest.Fill(p, 42, 42)
	return p
}

// helperFlock takes an exclusive flock of arg, says "locked", and holds
// it until stdin closes.
func helperFlock(arg string) {
	f, err := os.OpenFile(arg, os.O_RDWR, 0)
	check(err)
	check(unix.Flock(int(f.Fd()), unix.LOCK_EX))
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
}

// helperFcntl takes a POSIX write lock of arg's first 100 bytes, says
// "locked", and holds it until stdin closes.
func helperFcntl(arg string) {
	f, err := os.OpenFile(arg, os.O_RDWR, 0)
	check(err)
	lk := unix.Flock_t{Type: unix.F_WRLCK, Whence: 0, Start: 0, Len: 100}
	check(unix.FcntlFlock(f.Fd(), unix.F_SETLKW, &lk))
	fmt.Println("locked")
	io.Copy(io.Discard, os.Stdin)
}

func check(err error) {
	if err != nil {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(1)
	}
}

// isErrno reports whether err carries errno.
func isErrno(err error, errno syscall.Errno) bool {
	return errors.Is(err, errno)
}

func benchMount(b *testing.B, opts gofuse.Options) *testMount { return mountStandard(b, opts) }
