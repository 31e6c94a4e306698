//go:build linux

package main

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

func requireTool(t *testing.T, name string) {
	t.Helper()
	if _, err := exec.LookPath(name); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("CI needs %s (bash .ci/test installs it): %v", name, err)
		}
		t.Skipf("%s not installed (this never skips in CI)", name)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// A real VM-disk client through the mount: qemu-img makes a VMDK, which is
// published and cloned; qemu-io writes patterns into the clone's VMDK
// (buffered, and with O_DIRECT); the clone checks clean and matches an
// image given the same writes locally; the template's VMDK is unchanged.
func TestQemuImageThroughMount(t *testing.T) {
	requireTool(t, "qemu-img")
	requireTool(t, "qemu-io")
	s := startServer(t, t.TempDir())
	work := t.TempDir()
	vm := filepath.Join(work, "tpl")
	os.Mkdir(vm, 0o755)
	disk := filepath.Join(vm, "xp.vmdk")
	run(t, "qemu-img", "create", "-q", "-f", "vmdk", disk, "2G")
	run(t, "qemu-io", "-f", "vmdk", "-c", "write -P 0x11 0 4M", "-c", "write -P 0x22 1G 1M", disk)
	os.WriteFile(filepath.Join(vm, "xp.vmx"), []byte("displayName = \"xp\"\nide0:0.fileName = \"xp.vmdk\"\n"), 0o644)
	s.dvfs("template", "publish", "--name", "xp", vm)
	s.dvfs("clone", "create", "--template", "xp", "lab1")
	expected := filepath.Join(work, "expected.vmdk")
	run(t, "cp", "--sparse=always", disk, expected)

	mnt := filepath.Join(work, "mnt")
	m := s.startMount(t, filepath.Join(work, "cache"), mnt)
	clone := filepath.Join(mnt, "clones", "lab1", "xp.vmdk")
	writes := []struct {
		args []string // qemu-io options before the image
		cmds []string
	}{
		{nil, []string{"write -P 0xab 1M 64k", "write -P 0xcd 100M 4k", "write -P 0xef 1G 512"}},
		// -n: cache=none, the image opened with O_DIRECT.
		{[]string{"-n"}, []string{"write -P 0x5a 3M 128k", "write -P 0x5b 1500M 8k"}},
		{nil, []string{"write -z 0 64k", "write -P 0x77 2047M 1M"}},
	}
	for _, w := range writes {
		for _, img := range []string{clone, expected} {
			args := append([]string{"-f", "vmdk"}, w.args...)
			for _, c := range w.cmds {
				args = append(args, "-c", c)
			}
			run(t, "qemu-io", append(args, img)...)
		}
	}
	run(t, "qemu-img", "check", "-f", "vmdk", clone)
	run(t, "qemu-img", "compare", "-f", "vmdk", "-F", "vmdk", clone, expected)
	run(t, "qemu-io", "-f", "vmdk", "-c", "read -P 0x5a 3M 128k", clone)
	// The template through the mount and on the server is unchanged.
	run(t, "cmp", filepath.Join(mnt, "templates", "xp", "xp.vmdk"), disk)
	vmx, _ := os.ReadFile(filepath.Join(mnt, "clones", "lab1", "xp.vmx"))
	if !bytes.Contains(vmx, []byte(`displayName = "lab1"`)) {
		t.Fatalf("clone .vmx has no displayName of its own:\n%s", vmx)
	}
	// And the writes survive a clean unmount and a new mount.
	m.unmount()
	s.startMount(t, filepath.Join(work, "cache"), mnt)
	run(t, "qemu-img", "compare", "-f", "vmdk", "-F", "vmdk", clone, expected)
	t.Log(strings.TrimSpace(fmt.Sprint(run(t, "qemu-img", "info", clone))))
}
