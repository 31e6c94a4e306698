//go:build linux

package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/etcdmeta/etcdtest"
)

// TestServeMetaEtcd runs dvfs serve with its metadata in a three-member
// etcd cluster: a published version is listed and exports byte-exact
// after a restart, is not in the data directory's own store, and a
// second version publishes with one member killed.
func TestServeMetaEtcd(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{MaxTxnOps: metaMaxTxnOps, MaxRequestBytes: metaMaxRequestBytes})
	meta := "etcd://" + strings.Join(c.Endpoints(), ",") + "/dvfs-e2e"
	data := t.TempDir()
	s := startServerAt(t, data, "127.0.0.1:0", "--meta", meta)
	if !strings.Contains(s.log.String(), "metadata in etcd") {
		t.Fatalf("the server does not say where its metadata is:\n%s", s.log)
	}
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	os.WriteFile(filepath.Join(vm, "vm.vmx"), []byte("displayName = \"vm\"\n"), 0o644)
	writeVMDisk(t, filepath.Join(vm, "vm.vmdk"), 64<<20, 1)
	s.dvfs("template", "publish", "--name", "vm", vm)
	s.stop(syscall.SIGTERM)

	// Without --meta the same data directory's store has no version:
	// versions are in etcd. Its store has no token either, so it makes a
	// new admin token; the one in etcd is put back for the next server.
	tokenFile := filepath.Join(data, "admin.token")
	token, err := os.ReadFile(tokenFile)
	if err != nil {
		t.Fatal(err)
	}
	local := startServerAt(t, data, "127.0.0.1:0")
	if list := local.dvfs("template", "list"); regexp.MustCompile(`(?m)^vm\s`).MatchString(list) {
		t.Fatalf("the data directory's own store lists the version:\n%s", list)
	}
	local.stop(syscall.SIGTERM)
	if err := os.WriteFile(tokenFile, token, 0o600); err != nil {
		t.Fatal(err)
	}

	s = startServerAt(t, data, "127.0.0.1:0", "--meta", meta)
	if list := s.dvfs("template", "list"); !regexp.MustCompile(`(?m)^vm\s+1\s`).MatchString(list) {
		t.Fatalf("after a restart with --meta, version 1 is not listed:\n%s", list)
	}
	exp := filepath.Join(t.TempDir(), "v1")
	s.dvfs("template", "export", "vm@1", exp)
	sameTree(t, vm, exp)

	c.Members[0].Kill()
	writeVMDisk(t, filepath.Join(vm, "vm.vmdk"), 64<<20, 2)
	s.dvfs("template", "publish", "--name", "vm", vm)
	exp = filepath.Join(t.TempDir(), "v2")
	s.dvfs("template", "export", "vm@2", exp)
	sameTree(t, vm, exp)
}
