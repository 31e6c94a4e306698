package server_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/client"
	"github.com/dvfs-project/dvfs/sync/clones"
	"github.com/dvfs-project/dvfs/sync/export"
	"github.com/dvfs-project/dvfs/sync/publish"
)

func TestCloneLifecycle(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	src := writeTree(t)
	if _, err := publish.Publish(ctx, publish.Config{Server: e.admin, Name: "xp", Dir: src}); err != nil {
		t.Fatal(err)
	}
	user := func(name string) *client.Client {
		tok, err := e.admin.CreateToken(ctx, name, "user")
		if err != nil {
			t.Fatal(err)
		}
		c, _ := client.New(client.Config{Server: e.srv.URL, Token: tok.Token})
		return c
	}
	alice, bob := user("alice"), user("bob")
	if p, err := alice.WhoAmI(ctx); err != nil || p.Name != "alice" || p.Role != "user" {
		t.Fatalf("whoami: %v %+v", err, p)
	}

	info, err := clones.Create(ctx, alice, "xp", 0, "lab1")
	if err != nil {
		t.Fatal(err)
	}
	if info.Owner != "alice" || info.Generation != 1 || info.TemplateVersion != 1 {
		t.Fatalf("info %+v", info)
	}
	if _, err := clones.Create(ctx, alice, "xp", 0, "lab1"); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("second clone with the same name: %v", err)
	}
	// Names are per owner: bob may have a lab1 too, and sees only his.
	if _, err := clones.Create(ctx, bob, "xp", 1, "lab1"); err != nil {
		t.Fatal(err)
	}
	if l, _ := bob.Clones(ctx); len(l) != 1 || l[0].Owner != "bob" {
		t.Fatalf("bob's clones: %+v", l)
	}

	m, _, err := alice.CloneManifest(ctx, "lab1")
	if err != nil {
		t.Fatal(err)
	}
	if m.Kind != manifest.KindClone {
		t.Fatalf("kind %d", m.Kind)
	}
	out := filepath.Join(disktest.TempDir(t), "out")
	if err := export.Export(ctx, alice, m, out); err != nil {
		t.Fatal(err)
	}
	vmx, _ := os.ReadFile(filepath.Join(out, "xp.vmx"))
	if !bytes.Contains(vmx, []byte(`displayName = "lab1"`)) {
		t.Fatalf("clone vmx: %q", vmx)
	}
	disk, _ := os.ReadFile(filepath.Join(out, "xp.vmdk"))
	orig, _ := os.ReadFile(filepath.Join(src, "xp.vmdk"))
	if !bytes.Equal(disk, orig) {
		t.Fatal("clone disk differs from the template's")
	}
	// The clone's own vmx block survives a collection after the template
	// is gone.
	if _, err := e.admin.Remove(ctx, "xp", 0); err != nil {
		t.Fatal(err)
	}
	out2 := filepath.Join(disktest.TempDir(t), "out2")
	if err := export.Export(ctx, alice, m, out2); err != nil {
		t.Fatalf("clone lost blocks to GC: %v", err)
	}
	if err := alice.RemoveClone(ctx, "lab1"); err != nil {
		t.Fatal(err)
	}
	if _, err := alice.Clone(ctx, "lab1"); !client.IsNotFound(err) {
		t.Fatalf("removed clone: %v", err)
	}
}
