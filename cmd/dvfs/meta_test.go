package main

import (
	"strings"
	"testing"
)

// TestMetaURL checks --meta's parsing: endpoints, prefix, limits, and the
// mistakes it refuses.
func TestMetaURL(t *testing.T) {
	cfg, err := parseMetaURL("etcd://alice@10.0.0.1:2379,10.0.0.2:2379/lab1?max-txn-ops=10000")
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(cfg.Endpoints, " ") != "10.0.0.1:2379 10.0.0.2:2379" || cfg.Prefix != "lab1/" ||
		cfg.Username != "alice" || cfg.MaxTxnOps != 10000 || cfg.MaxRequestBytes != metaMaxRequestBytes {
		t.Errorf("parsed %+v", cfg)
	}
	for _, bad := range []string{
		"http://h:2379/p",
		"etcd://h:2379",
		"etcd://h:2379/",
		"etcd://h/p",
		"etcd://h:1,,h:2/p",
		"etcd://alice:secret@h:2379/p",
		"etcd://h:2379/p?max-txn-ops=0",
		"etcd://h:2379/p?max-txn-opz=5",
	} {
		if _, err := parseMetaURL(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
