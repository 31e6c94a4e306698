package disktest

import (
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
)

// TestTempDir fills a TempDir with files and directories and checks that
// RemoveTree leaves nothing of it.
func TestTempDir(t *testing.T) {
	dir := TempDir(t)
	sub := filepath.Join(dir, "tree")
	if err := os.MkdirAll(filepath.Join(sub, "a", "b"), 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"f", "a/g", "a/b/h"} {
		if err := os.WriteFile(filepath.Join(sub, p), []byte(p), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := RemoveTree(sub); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(sub); !os.IsNotExist(err) {
		t.Fatalf("after RemoveTree: %v", err)
	}
	if err := RemoveTree(sub); err != nil {
		t.Fatalf("RemoveTree of a missing directory: %v", err)
	}
}

// TestFreeAddr: the addresses are distinct, below the kernel's ephemeral
// range, and free: a server binds each at once. An outgoing connection
// made between FreeAddr and the bind cannot take one, as its local port
// comes from the ephemeral range.
func TestFreeAddr(t *testing.T) {
	seen := map[string]bool{}
	for range 100 {
		addr := FreeAddr(t)
		if seen[addr] {
			t.Fatalf("%s given out twice", addr)
		}
		seen[addr] = true
		_, p, err := net.SplitHostPort(addr)
		if err != nil {
			t.Fatal(err)
		}
		port, _ := strconv.Atoi(p)
		if port < freeLow || port >= freeHigh {
			t.Fatalf("%s: port outside %d-%d", addr, freeLow, freeHigh-1)
		}
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			t.Fatalf("bind %s: %v", addr, err)
		}
		ln.Close()
	}
	// The ephemeral range is where the kernel picks a port for a ":0"
	// listener; FreeAddr's are below it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if port := ln.Addr().(*net.TCPAddr).Port; port < freeHigh {
		t.Errorf("the kernel's own port %d is in FreeAddr's range %d-%d", port, freeLow, freeHigh-1)
	}
}
