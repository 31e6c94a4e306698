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
	"github.com/dvfs-project/dvfs/blockstore/s3store/s3test"
)

// TestServeMetaEtcd runs dvfs serve with its metadata in a three-member
// etcd cluster: a published version is listed and exports byte-exact
// after a restart, the data directory is refused without that --meta,
// and a second version publishes with one member killed.
func TestServeMetaEtcd(t *testing.T) {
	t.Parallel()
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

	// Without --meta, or with another prefix, the data directory is
	// refused: its blocks belong to the repository in etcd.
	for _, other := range [][]string{nil, {"--meta", meta + "-other"}} {
		out, err := command(nil, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0"}, other...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), "blocks belong to the metadata in etcd:dvfs-e2e/") {
			t.Fatalf("serve %v on the data directory: %v\n%s", other, err, out)
		}
	}

	// Nor is a data directory whose repository is its own moved to etcd.
	own := t.TempDir()
	startServerAt(t, own, "127.0.0.1:0").stop(syscall.SIGTERM)
	out, err := command(nil, "serve", "--data", own, "--listen", "127.0.0.1:0", "--meta", meta).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "blocks belong to the metadata in local") {
		t.Fatalf("serve --meta on a data directory with its own metadata: %v\n%s", err, out)
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

// TestServeStoreAndMetaEtcd runs dvfs serve as issue 17's servers run:
// blocks in an S3 server, their index and the repository's metadata in
// etcd. A version publishes and exports byte-exact, again after a
// restart, and again with one etcd member killed.
func TestServeStoreAndMetaEtcd(t *testing.T) {
	t.Parallel()
	c, bucket, flags := etcdAndS3(t)
	data := t.TempDir()
	s := startServerAt(t, data, "127.0.0.1:0", flags...)
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	os.WriteFile(filepath.Join(vm, "vm.vmx"), []byte("displayName = \"vm\"\n"), 0o644)
	writeVMDisk(t, filepath.Join(vm, "vm.vmdk"), 64<<20, 1)
	s.dvfs("template", "publish", "--name", "vm", vm)
	if packs := diskUse(t, filepath.Join(bucket, "lab")); packs < 16<<20 {
		t.Fatalf("the bucket holds %d bytes after the publish, want the template's blocks", packs)
	}
	s.stop(syscall.SIGTERM)

	s = startServerAt(t, data, "127.0.0.1:0", flags...)
	exp := filepath.Join(t.TempDir(), "v1")
	s.dvfs("template", "export", "vm@1", exp)
	sameTree(t, vm, exp)

	c.Members[1].Kill()
	writeVMDisk(t, filepath.Join(vm, "vm.vmdk"), 64<<20, 2)
	s.dvfs("template", "publish", "--name", "vm", vm)
	exp = filepath.Join(t.TempDir(), "v2")
	s.dvfs("template", "export", "vm@2", exp)
	sameTree(t, vm, exp)
}

// etcdAndS3 starts a three-member etcd cluster and a versitygw with a
// bucket, and returns the cluster, the bucket's directory and the serve
// flags that use both: --store URL --meta URL --store-credentials FILE,
// in that order.
func etcdAndS3(t *testing.T) (*etcdtest.Cluster, string, []string) {
	t.Helper()
	c := etcdtest.Start(t, etcdtest.Options{MaxTxnOps: metaMaxTxnOps, MaxRequestBytes: metaMaxRequestBytes})
	srv := s3test.Start(t)
	bucket := filepath.Join(srv.Dir, "dvfs-e2e")
	if err := os.Mkdir(bucket, 0o755); err != nil {
		t.Fatal(err) // versitygw's posix backend: a bucket is a directory
	}
	// The credentials go in a file, not the environment (t.Setenv), so
	// that tests over etcd and S3 may run in parallel.
	creds := filepath.Join(t.TempDir(), "s3-credentials")
	if err := os.WriteFile(creds, []byte(s3test.AccessKey+"\n"+s3test.SecretKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return c, bucket, []string{
		"--store", "s3://dvfs-e2e/lab?endpoint=" + srv.Endpoint + "&region=" + s3test.Region + "&tls=false",
		"--meta", "etcd://" + strings.Join(c.Endpoints(), ",") + "/dvfs-e2e",
		"--store-credentials", creds,
	}
}
