//go:build linux

package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta"
	"github.com/dvfs-project/dvfs/blockstore/etcdmeta/etcdtest"
	"github.com/dvfs-project/dvfs/sync/server"
)

// dvfs migrate moves an embedded server's repository into etcd and an
// object store: refused while the server runs; then the template and a
// clone written through a mount read back byte-exact through a server
// over etcd and S3 that signs with the migrated key, and the clone takes
// writes there. Migrating again is a no-op; migrating another repository
// into the target fails and changes nothing there.
func TestMigrate(t *testing.T) {
	t.Parallel()
	requireFUSE(t)
	c, bucket, flags := etcdAndS3(t)
	from, data := t.TempDir(), filepath.Join(t.TempDir(), "data")
	migrate := func(from string) (string, error) {
		out, err := command(nil, append([]string{"migrate", "--from", from, "--data", data}, flags...)...).CombinedOutput()
		return string(out), err
	}

	s := startServer(t, from)
	vm := filepath.Join(t.TempDir(), "vm")
	os.Mkdir(vm, 0o755)
	os.WriteFile(filepath.Join(vm, "vm.vmx"), []byte("displayName = \"vm\"\n"), 0o644)
	writeVMDisk(t, filepath.Join(vm, "vm.vmdk"), 8<<20, 5)
	s.dvfs("template", "publish", "--name", "vm", vm)
	s.dvfs("clone", "create", "--template", "vm", "lab")
	disk, err := os.ReadFile(filepath.Join(vm, "vm.vmdk"))
	if err != nil {
		t.Fatal(err)
	}
	patch := make([]byte, 300<<10)
	rand.NewChaCha8([32]byte{'m'}).Read(patch)
	copy(disk[1<<20:], patch)
	work := t.TempDir()
	m := s.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"))
	clone := filepath.Join(m.dir, "clones", "lab")
	writeAt(t, filepath.Join(clone, "vm.vmdk"), 1<<20, patch)
	if err := writeSync(filepath.Join(clone, "note.txt"), []byte("before\n")); err != nil {
		t.Fatal(err)
	}
	m.unmount() // durable: it returns once the clone is on the server

	out, err := migrate(from)
	if err == nil || !strings.Contains(out, "stop the dvfs serve") {
		t.Fatalf("migrate from a running server: %v, want a refusal saying to stop it:\n%s", err, out)
	}
	s.stop(syscall.SIGTERM)

	// Migrations cut off: after the first pack of blocks, then after the
	// first metadata commit (of 4 keys at most). No server starts on the
	// target meanwhile, and each run goes on where the last stopped.
	store, meta := flags[1], flags[3]
	cutOff := func(at, store, meta string) string {
		t.Helper()
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		h := &cancelOn{msg: at, cancel: cancel}
		g := &globals{log: slog.New(h)}
		if err := runMigrate(ctx, g, migrateConfig{from: from, data: data, store: storeConfig{url: store, credsFile: flags[5]}, meta: meta}, io.Discard); err == nil {
			t.Fatalf("the migration cut off at %q succeeded", at)
		}
		return h.log.String()
	}
	cutOff("put blocks", store+"&pack-size=1MiB", meta)
	cutLog := cutOff("committed metadata", store, meta+"?max-txn-ops=4")
	blocks := regexp.MustCompile(`copied blocks copied=[1-9]\d* skipped=[1-9]\d*`).FindString(cutLog)
	if blocks == "" {
		t.Fatalf("the second migration did not go on from the first's blocks:\n%s", cutLog)
	}
	t.Logf("the second migration: %s", blocks)
	serve := command(nil, append([]string{"serve", "--data", data, "--listen", "127.0.0.1:0"}, flags...)...)
	var log bytes.Buffer
	serve.Stdout, serve.Stderr = &log, &log
	if err := serve.Start(); err != nil {
		t.Fatal(err)
	}
	kill := time.AfterFunc(time.Minute, func() { serve.Process.Kill() }) // it should not run
	err = serve.Wait()
	kill.Stop()
	if err == nil || !strings.Contains(log.String(), "has not finished") {
		t.Fatalf("serve on a half-migrated repository: %v, want a refusal:\n%s", err, log.String())
	}
	out, err = migrate(from)
	if err != nil || !strings.Contains(out, "migrated "+from) || !strings.Contains(out, "(0 copied, 0 B;") ||
		!regexp.MustCompile(`metadata keys \([1-9]\d* copied, 4 already there\)`).MatchString(out) {
		t.Fatalf("migrate after interrupted ones: %v, want every block and 4 keys already there:\n%s", err, out)
	}
	t.Logf("migrate: %s", lastLine(out))
	if out, err = migrate(from); err != nil || !strings.Contains(out, "already migrated") {
		t.Fatalf("migrate again: %v, want a no-op:\n%s", err, out)
	}

	s2 := startServerAt(t, data, "127.0.0.1:0", flags...)
	keyID := regexp.MustCompile(`msg=serving .*key_id=(\S+)`)
	// The log gets the line just after startServerAt saw it.
	s2.log.waitFor(10*time.Second, func(log string) bool { return keyID.MatchString(log) })
	if k1, k2 := keyID.FindStringSubmatch(s.log.String()), keyID.FindStringSubmatch(s2.log.String()); k1 == nil || k2 == nil || k1[1] != k2[1] {
		t.Fatalf("the server over etcd and S3 signs with key %v, the embedded one with %v", k2, k1)
	}
	work = t.TempDir()
	m = s2.startMount(t, filepath.Join(work, "cache"), filepath.Join(work, "mnt"))
	sameTree(t, vm, filepath.Join(m.dir, "templates", "vm"))
	clone = filepath.Join(m.dir, "clones", "lab")
	if got, err := os.ReadFile(filepath.Join(clone, "vm.vmdk")); err != nil || !bytes.Equal(got, disk) {
		t.Fatalf("the clone's disk after the migration: %v, %d bytes, equal %v", err, len(got), bytes.Equal(got, disk))
	}
	if got, _ := os.ReadFile(filepath.Join(clone, "note.txt")); string(got) != "before\n" {
		t.Fatalf("the clone's note after the migration: %q", got)
	}
	if err := writeSync(filepath.Join(clone, "note.txt"), []byte("after\n")); err != nil {
		t.Fatal(err)
	}
	m.unmount()
	exp := filepath.Join(t.TempDir(), "lab")
	s2.dvfs("clone", "export", "lab", exp)
	if got, _ := os.ReadFile(filepath.Join(exp, "note.txt")); string(got) != "after\n" {
		t.Fatalf("the clone's write through the migrated repository: export holds %q", got)
	}
	s2.stop(syscall.SIGTERM)

	// Another repository into this target: refused, nothing changed.
	other := t.TempDir()
	s3 := startServer(t, other)
	s3.stop(syscall.SIGTERM)
	before, packs := etcdSnapshot(t, c), diskUse(t, bucket)
	b, err := command(nil, append([]string{"migrate", "--from", other, "--data", t.TempDir()}, flags...)...).CombinedOutput()
	if out = string(b); err == nil || !strings.Contains(out, "holds another repository") {
		t.Fatalf("migrating another repository into the target: %v, want a refusal:\n%s", err, out)
	}
	if after := etcdSnapshot(t, c); after != before || diskUse(t, bucket) != packs {
		t.Fatal("the refused migration changed the target")
	}
	// After the servers ran on it, a migration of the same repository
	// only checks.
	if out, err := migrate(from); err != nil || !strings.Contains(out, "already migrated") {
		t.Fatalf("migrate after the servers ran: %v\n%s", err, out)
	}
}

// cancelOn is a log handler that keeps every record's message and
// attributes, and calls cancel when one with the message msg arrives.
type cancelOn struct {
	msg    string
	cancel func()
	log    strings.Builder
}

func (h *cancelOn) Enabled(context.Context, slog.Level) bool { return true }
func (h *cancelOn) WithAttrs([]slog.Attr) slog.Handler       { return h }
func (h *cancelOn) WithGroup(string) slog.Handler            { return h }
func (h *cancelOn) Handle(_ context.Context, r slog.Record) error {
	h.log.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool { fmt.Fprintf(&h.log, " %s=%v", a.Key, a.Value); return true })
	h.log.WriteString("\n")
	if r.Message == h.msg {
		h.cancel()
	}
	return nil
}

// writeAt writes b at off in the file at path and syncs it.
func writeAt(t *testing.T, path string, off int64, b []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}

// etcdSnapshot is a digest of every key and value in the cluster under
// the repository's prefix.
func etcdSnapshot(t *testing.T, c *etcdtest.Cluster) string {
	t.Helper()
	ctx := context.Background()
	m, err := etcdmeta.Open(ctx, etcdmeta.Config{Endpoints: c.Endpoints(), Prefix: "dvfs-e2e/"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	h := sha256.New()
	n := 0
	err = m.ListMeta(ctx, "", func(k string, v []byte) error {
		n++
		h.Write([]byte(k + "\x00"))
		h.Write(v)
		h.Write([]byte{0})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no keys in etcd")
	}
	return string(h.Sum(nil))
}

// dvfs migrate's refusals before it touches anything, and a metadata key
// whose value is empty, which arrives present and empty.
func TestMigrateEdges(t *testing.T) {
	c, _, flags := etcdAndS3(t)
	ctx := context.Background()
	from := t.TempDir()
	g := &globals{log: slog.New(slog.DiscardHandler)}
	run := func(data string) error {
		return runMigrate(ctx, g, migrateConfig{from: from, data: data, store: storeConfig{url: flags[1], credsFile: flags[5]}, meta: flags[3]}, io.Discard)
	}
	if err := run(""); err == nil || !strings.Contains(err.Error(), "not the data directory of a dvfs server") {
		t.Fatalf("migrate from a directory without a key: %v", err)
	}
	if _, _, err := server.LoadOrCreateKey(from); err != nil {
		t.Fatal(err)
	}
	src, err := badgerstore.Open(filepath.Join(from, "store"), badgerstore.Config{})
	if err != nil {
		t.Fatal(err)
	}
	err = src.CommitMeta(ctx, blockstore.MetaOp{Key: "tpl/x/empty", Value: []byte{}}, blockstore.MetaOp{Key: metaBindingKey, Value: []byte("local")})
	src.Close()
	if err != nil {
		t.Fatal(err)
	}
	if err := run(from); err == nil || !strings.Contains(err.Error(), "is --from") {
		t.Fatalf("migrate with --data the same as --from: %v", err)
	}
	if err := run(filepath.Join(t.TempDir(), "new")); err != nil {
		t.Fatal(err)
	}
	m, err := etcdmeta.Open(ctx, etcdmeta.Config{Endpoints: c.Endpoints(), Prefix: "dvfs-e2e/"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	// s3store keeps the repository's keys under "u".
	if v, err := m.GetMeta(ctx, "utpl/x/empty"); err != nil || len(v) != 0 {
		t.Fatalf("the empty value after the migration: %q, %v", v, err)
	}
	if _, err := m.GetMeta(ctx, "u"+metaBindingKey); err == nil {
		t.Fatal("the data directory's binding was migrated")
	}
}
