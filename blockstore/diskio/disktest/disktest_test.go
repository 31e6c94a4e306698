package disktest

import (
	"os"
	"path/filepath"
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
