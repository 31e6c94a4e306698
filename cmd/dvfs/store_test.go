package main

import (
	"os"
	"strings"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore/diskio/disktest"
)

func TestParseStoreURL(t *testing.T) {
	for _, tc := range []struct {
		url     string
		bucket  string
		prefix  string
		secure  bool
		errPart string // empty: no error
	}{
		{url: "s3://vm?endpoint=s3.lab:9000", bucket: "vm", secure: true},
		{url: "s3://vm/lab1/?endpoint=s3.lab:9000&tls=false&region=eu", bucket: "vm", prefix: "lab1/"},
		{url: "s3://vm?endpoint=s3.lab:9000&pack-size=64MiB", bucket: "vm", secure: true},
		{url: "s3://vm", errPart: "no endpoint"},
		{url: "s3://vm?endpoint=s3.lab", errPart: "not HOST:PORT"},
		{url: "s3://vm?endpoint=s3.lab:9000&tls=maybe", errPart: "tls="},
		{url: "s3://vm?endpoint=s3.lab:9000&color=red", errPart: "unknown option"},
		{url: "s3://key:secret@vm?endpoint=s3.lab:9000", errPart: "not in the URL"},
		{url: "file:///srv/blocks", errPart: "want s3://"},
		{url: "s3:///x?endpoint=s3.lab:9000", errPart: "want s3://"},
	} {
		t.Run(tc.url, func(t *testing.T) {
			cfg, err := parseStoreURL(tc.url)
			if tc.errPart != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errPart) {
					t.Fatalf("err %v, want one containing %q", err, tc.errPart)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Bucket != tc.bucket || cfg.Prefix != tc.prefix || cfg.Secure != tc.secure || cfg.Endpoint != "s3.lab:9000" {
				t.Fatalf("got %+v", cfg)
			}
		})
	}
}

func TestStoreCredentials(t *testing.T) {
	t.Setenv(s3AccessKeyEnv, "")
	t.Setenv(s3SecretKeyEnv, "")
	if _, _, err := storeCredentials(""); err == nil || !strings.Contains(err.Error(), s3AccessKeyEnv) {
		t.Fatalf("no credentials: err %v", err)
	}
	t.Setenv(s3AccessKeyEnv, "ak")
	t.Setenv(s3SecretKeyEnv, "sk")
	if a, s, err := storeCredentials(""); err != nil || a != "ak" || s != "sk" {
		t.Fatalf("from the environment: %q %q %v", a, s, err)
	}
	f := disktest.TempDir(t) + "/creds"
	os.WriteFile(f, []byte("fa\r\nfs\n"), 0o600)
	if a, s, err := storeCredentials(f); err != nil || a != "fa" || s != "fs" {
		t.Fatalf("from a file: %q %q %v", a, s, err)
	}
	os.WriteFile(f, []byte("only-one\n"), 0o600)
	if _, _, err := storeCredentials(f); err == nil || !strings.Contains(err.Error(), "two lines") {
		t.Fatalf("one line: err %v", err)
	}
}
