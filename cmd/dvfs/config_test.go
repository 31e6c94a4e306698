package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

// parsed returns dvfs's subcommand name with args parsed, as cobra has it
// when the command's PersistentPreRunE runs.
func parsed(t *testing.T, name string, args ...string) *cobra.Command {
	t.Helper()
	cmd, _, err := newRoot().Find([]string{name})
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.ParseFlags(args); err != nil {
		t.Fatal(err)
	}
	return cmd
}

func flagValue(t *testing.T, cmd *cobra.Command, name string) string {
	t.Helper()
	f := cmd.Flags().Lookup(name)
	if f == nil {
		t.Fatalf("no flag --%s", name)
	}
	return f.Value.String()
}

// checkFlags fails unless cmd's flags have the values want gives.
func checkFlags(t *testing.T, cmd *cobra.Command, want map[string]string) {
	t.Helper()
	for flag, w := range want {
		if got := flagValue(t, cmd, flag); got != w {
			t.Errorf("%s --%s = %q, want %q", cmd.Name(), flag, got, w)
		}
	}
}

// TestConfigExamples loads the committed examples: every key is a flag,
// the file sets what the command line does not, and the command line
// wins.
func TestConfigExamples(t *testing.T) {
	t.Setenv(envServer, "")
	serve := parsed(t, "serve", "--listen", "127.0.0.1:7999", "--gc-every", "1h")
	if err := applyConfigFile(serve, "dist/serve.toml"); err != nil {
		t.Fatal(err)
	}
	checkFlags(t, serve, map[string]string{
		"listen":               "127.0.0.1:7999", // the command line's
		"gc-every":             "1h0m0s",         // the command line's
		"data":                 "/srv/dvfs",
		"multicast-group":      "239.255.42.42:7421",
		"multicast-receivers":  "80",
		"multicast-on-publish": "true",
		"metrics-listen":       ":9420",
		"log-format":           "json",
		"idle-timeout":         "1m30s",
	})
	mount := parsed(t, "mount", "--cache", "/tmp/c", "--map-uid", "1000:2000")
	if err := applyConfigFile(mount, "dist/mount.toml"); err != nil {
		t.Fatal(err)
	}
	checkFlags(t, mount, map[string]string{
		"cache":          "/tmp/c",
		"map-uid":        "[1000:2000]",
		"server":         "https://dvfs.lab.example:7420",
		"cache-size":     "200GiB",
		"sync-interval":  "5s",
		"multicast":      "true",
		"metrics-listen": "127.0.0.1:9421",
	})
	// A required flag the file gives counts as given.
	if err := serve.ValidateRequiredFlags(); err != nil {
		t.Errorf("serve with data from the file: %v", err)
	}
}

func TestConfigOverrides(t *testing.T) {
	t.Setenv(envServer, "")
	path := writeConfig(t, `
[mount]
cache = "/var/cache/dvfs"
map-gid = ["10:20", "11:21"]
server = "http://file:7420"
`)
	mount := parsed(t, "mount")
	if err := applyConfigFile(mount, path); err != nil {
		t.Fatal(err)
	}
	if got := flagValue(t, mount, "map-gid"); got != "[10:20,11:21]" {
		t.Errorf("map-gid from an array = %s", got)
	}
	// The environment's server wins over the file's.
	t.Setenv(envServer, "http://env:7420")
	mount = parsed(t, "mount")
	if err := applyConfigFile(mount, path); err != nil {
		t.Fatal(err)
	}
	if got := flagValue(t, mount, "server"); got != "" {
		t.Errorf("server with DVFS_SERVER set = %q, want it left to the environment", got)
	}
	// A flag on the command line wins over the file's.
	mount = parsed(t, "mount", "--server", "http://flag:7420", "--cache=/c")
	if err := applyConfigFile(mount, path); err != nil {
		t.Fatal(err)
	}
	if got := flagValue(t, mount, "server"); got != "http://flag:7420" {
		t.Errorf("server = %q, want the flag's", got)
	}
	if got := flagValue(t, mount, "cache"); got != "/c" {
		t.Errorf("cache = %q, want the flag's", got)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, file string
		want       []string
	}{
		{"unknown key", "[serve]\ndata = \"/d\"\nlisen = \":1\"\n", []string{`[serve] unknown key "lisen"`}},
		{"unknown key of the other command", "[mount]\ncahce = \"/c\"\n", []string{`[mount] unknown key "cahce"`}},
		{"unknown table", "[server]\ndata = \"/d\"\n", []string{`unknown key "server"`}},
		{"token", "[mount]\ntoken = \"secret\"\n", []string{`[mount] token`, "DVFS_TOKEN"}},
		{"bad value", "[serve]\nmax-conns = \"many\"\n", []string{"[serve] max-conns", "many"}},
		{"bad type", "[serve]\nmax-conns = 1.5\n", []string{"[serve] max-conns", "float64"}},
		{"syntax", "[serve]\ndata = \n", []string{"config.toml:2"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := writeConfig(t, tc.file)
			err := applyConfigFile(parsed(t, "serve"), path)
			if err == nil {
				t.Fatalf("no error for %q", tc.file)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func writeConfig(t *testing.T, text string) string {
	path := filepath.Join(disktest.TempDir(t), "config.toml")
	if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestVersion: dvfs version and dvfs --version name the Go release.
func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"version"}, {"--version"}} {
		root := newRoot()
		var out strings.Builder
		root.SetOut(&out)
		root.SetArgs(args)
		if err := root.Execute(); err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(out.String(), "dvfs ") || !strings.Contains(out.String(), "go1.") {
			t.Errorf("dvfs %s: %q", args[0], out.String())
		}
	}
}

// dvfs doctor takes the flags it shares with dvfs mount from [mount]
// and passes over the mount's others.
func TestConfigDoctorReadsMount(t *testing.T) {
	t.Setenv(envServer, "")
	doc := parsed(t, "doctor", "--min-free", "1GiB")
	if err := applyConfigFile(doc, "dist/mount.toml"); err != nil {
		t.Fatal(err)
	}
	checkFlags(t, doc, map[string]string{
		"cache":    "/var/cache/dvfs",
		"min-free": "1GiB", // the command line's
		"server":   "https://dvfs.lab.example:7420",
	})
}

// dvfs migrate takes from [serve] where the servers keep the repository
// (--store, --store-credentials, --meta) and nothing else: [serve] data
// is a server's directory, not the one migrate fills.
func TestConfigMigrateReadsServe(t *testing.T) {
	file := filepath.Join(disktest.TempDir(t), "dvfs.toml")
	os.WriteFile(file, []byte(`[serve]
data = "/srv/dvfs"
listen = ":7420"
store = "s3://dvfs/lab?endpoint=s3.example:9000"
store-credentials = "/etc/dvfs/s3.credentials"
meta = "etcd://etcd1:2379,etcd2:2379/dvfs"
`), 0o644)
	mig := parsed(t, "migrate", "--from", "/srv/old", "--meta", "etcd://other:2379/x")
	if err := applyConfigFile(mig, file); err != nil {
		t.Fatal(err)
	}
	checkFlags(t, mig, map[string]string{
		"from":              "/srv/old",
		"data":              "",
		"store":             "s3://dvfs/lab?endpoint=s3.example:9000",
		"store-credentials": "/etc/dvfs/s3.credentials",
		"meta":              "etcd://other:2379/x", // the command line's
	})
}
