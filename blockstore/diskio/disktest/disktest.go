// Package disktest gives tests the scratch directories and the checks
// that the Windows build of dvfs needs, and that run the same way under
// Wine, where CI runs the Windows tests.
package disktest

import (
	"errors"
	"io/fs"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// TempDir returns a new directory for t that is removed with everything
// in it when t and its subtests have finished. On Linux and the others it
// is t.TempDir. On Windows the directory is removed entry by entry
// (DeleteFile and RemoveDirectory, deepest first): t.TempDir's cleanup,
// os.RemoveAll, uses a call Wine does not implement
// (FileDispositionInformationEx: "unlinkat: Invalid function"), and every
// test would fail at its end. A failure to remove is a test error.
func TempDir(t testing.TB) string {
	t.Helper()
	if runtime.GOOS != "windows" {
		return t.TempDir()
	}
	name := strings.Map(func(r rune) rune {
		if strings.ContainsRune(`<>:"/\|?*`, r) || r < ' ' {
			return '_'
		}
		return r
	}, t.Name())
	dir, err := os.MkdirTemp("", name[:min(len(name), 64)]+"-")
	if err != nil {
		t.Fatalf("TempDir: %v", err)
	}
	t.Cleanup(func() {
		if err := RemoveTree(dir); err != nil {
			t.Errorf("TempDir cleanup: %v", err)
		}
	})
	return dir
}

// RemoveTree removes dir and everything in it, one entry at a time,
// deepest first, with os.Remove (which works under Wine, unlike
// os.RemoveAll on Windows). A missing dir is no error.
func RemoveTree(dir string) error {
	var paths []string
	err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		paths = append(paths, p)
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	var errs []error
	for _, p := range slices.Backward(paths) {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// SkipUnderWine skips t when the test runs under Wine, saying why: for
// what Wine cannot do (a UDP socket, os.RemoveAll), never for what it
// does wrong.
//
// Wine is the one place a CI run (.ci/wine) may skip such a test: on
// Linux CI and on Windows, Wine() is false and the test runs.
func SkipUnderWine(t testing.TB, why string) {
	t.Helper()
	if Wine() {
		t.Skipf("under Wine: %s", why)
	}
}

// SkipOffLinux skips a test that cannot run on this system for the
// reason why. In CI (CI set) only the Wine run of .ci/wine may skip it;
// anywhere else there it fails, so CI never loses a test silently.
func SkipOffLinux(t testing.TB, why string) {
	t.Helper()
	if os.Getenv("CI") != "" && !Wine() {
		t.Fatalf("CI: %s, and this is not the Wine run that may skip it", why)
	}
	t.Skip(why)
}

// FreeAddr returns a loopback TCP address whose port is free right now,
// for a server a test starts (slapd, versitygw, etcd, dvfs serve) that
// must be told its address, or come back on the same one.
//
// The port is below the kernel's ephemeral range (Linux 32768-60999,
// Windows 49152-65535), never one the kernel hands out by itself: a port
// from "127.0.0.1:0" is free when this returns, and the next outgoing
// connection of any process on the machine may take it as its local port
// before the server binds it. In one CI run the third etcd member found
// its client port taken ("bind: address already in use"), most likely by
// a connection the two members started before it were already making to
// their peers. A port given out once is not given out again by this
// process, so the members of one cluster never draw the same one.
func FreeAddr(t testing.TB) string {
	t.Helper()
	freeMu.Lock()
	defer freeMu.Unlock()
	for range 200 {
		port := freeLow + rand.IntN(freeHigh-freeLow)
		if freeGiven[port] {
			continue
		}
		ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
		if err != nil {
			continue
		}
		ln.Close()
		freeGiven[port] = true
		return ln.Addr().String()
	}
	t.Fatalf("no free loopback port in %d-%d after 200 tries", freeLow, freeHigh-1)
	return ""
}

// The ports FreeAddr draws from: above the well-known and most services'
// ports, below both kernels' ephemeral ranges.
const freeLow, freeHigh = 20000, 32768

var (
	freeMu    sync.Mutex
	freeGiven = map[int]bool{}
)
