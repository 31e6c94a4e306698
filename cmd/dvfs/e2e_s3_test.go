//go:build linux

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/etcdmeta/etcdtest"
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
)

// TestServeStoreS3 runs dvfs serve with its blocks in an S3 server
// (versitygw): a published template reads back byte-exact through a mount
// with an empty cache, and again through another empty cache after the
// server restarts; the data directory's own store holds no blocks, the
// bucket does.
func TestServeStoreS3(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	srv := s3test.Start(t)
	if err := os.Mkdir(filepath.Join(srv.Dir, "dvfs-e2e"), 0o755); err != nil {
		t.Fatal(err) // versitygw's posix backend: a bucket is a directory
	}
	store := "s3://dvfs-e2e/lab?endpoint=" + srv.Endpoint + "&region=" + s3test.Region + "&tls=false"
	data := t.TempDir()

	// Without credentials the server refuses to start, and says why.
	noCreds := command(nil, "serve", "--data", data, "--listen", "127.0.0.1:0", "--store", store)
	noCreds.Env = append(os.Environ(), s3AccessKeyEnv+"=", s3SecretKeyEnv+"=")
	out, err := noCreds.CombinedOutput()
	if err == nil || !strings.Contains(string(out), s3AccessKeyEnv) {
		t.Fatalf("serve without credentials: err %v, want an error naming $%s:\n%s", err, s3AccessKeyEnv, out)
	}
	// The credentials in the environment (TestServeStoreS3MetaEtcd gives
	// them in a file).
	creds := []string{s3AccessKeyEnv + "=" + s3test.AccessKey, s3SecretKeyEnv + "=" + s3test.SecretKey}

	s := startServerEnv(t, nil, creds, data, "127.0.0.1:0", "--store", store)
	if !strings.Contains(s.log.String(), "blocks in an object store") {
		t.Fatalf("the server does not say where its blocks are:\n%s", s.log)
	}
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	os.WriteFile(filepath.Join(vm, "vm.vmx"), []byte("displayName = \"vm\"\n"), 0o644)
	writeVMDisk(t, filepath.Join(vm, "vm.vmdk"), 96<<20, 1)
	s.dvfs("template", "publish", "--name", "vm", vm)
	if packs := diskUse(t, filepath.Join(srv.Dir, "dvfs-e2e", "lab")); packs < 32<<20 {
		t.Fatalf("the bucket holds %d bytes after the publish, want the template's blocks", packs)
	}

	read := func(s *serverProc) {
		t.Helper()
		work := t.TempDir()
		m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"))
		sameTree(t, vm, filepath.Join(m.dir, "templates", "vm"))
		m.unmount()
	}
	read(s)
	s.stop(syscall.SIGTERM)
	s = startServerEnv(t, nil, creds, data, "127.0.0.1:0", "--store", store)
	read(s)
	s.stop(syscall.SIGTERM)
	if local := diskUse(t, filepath.Join(data, "store")); local > 16<<20 {
		t.Errorf("the data directory's store takes %d bytes: blocks went there, not to the bucket", local)
	}
}

// TestServeStoreS3MetaEtcd runs dvfs serve with its blocks in an S3 server
// and its metadata, the block index with it, in a three-member etcd
// cluster at etcd's default --max-txn-ops (128): every pack's commit must
// keep within it, and the template exports byte-exact after a restart.
func TestServeStoreS3MetaEtcd(t *testing.T) {
	t.Parallel()
	srv := s3test.Start(t)
	if err := os.Mkdir(filepath.Join(srv.Dir, "dvfs-e2e"), 0o755); err != nil {
		t.Fatal(err)
	}
	c := etcdtest.Start(t, etcdtest.Options{MaxTxnOps: 128, MaxRequestBytes: metaMaxRequestBytes})
	meta := "etcd://" + strings.Join(c.Endpoints(), ",") + "/dvfs-e2e?max-txn-ops=128"
	store := "s3://dvfs-e2e?endpoint=" + srv.Endpoint + "&region=" + s3test.Region + "&tls=false"
	creds := filepath.Join(t.TempDir(), "s3-credentials")
	if err := os.WriteFile(creds, []byte(s3test.AccessKey+"\n"+s3test.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	s := startServerAt(t, data, "127.0.0.1:0", "--meta", meta, "--store", store, "--store-credentials", creds)
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	writeVMDisk(t, filepath.Join(vm, "vm.vmdk"), 64<<20, 3)
	s.dvfs("template", "publish", "--name", "vm", vm)
	s.stop(syscall.SIGTERM)

	s = startServerAt(t, data, "127.0.0.1:0", "--meta", meta, "--store", store, "--store-credentials", creds)
	exp := filepath.Join(t.TempDir(), "v1")
	s.dvfs("template", "export", "vm@1", exp)
	sameTree(t, vm, exp)
}
