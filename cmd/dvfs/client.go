package main

import (
	"os"
	"strconv"
	"strings"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/client"
)

// newClient connects to the server named by --server / $DVFS_SERVER with
// --token / $DVFS_TOKEN / the token file dvfs login wrote (login.go).
func (g *globals) newClient() (*client.Client, error) {
	cfg := client.Config{Server: g.server, Token: g.token, CACert: g.caCert}
	if cfg.Server == "" {
		cfg.Server = os.Getenv(envServer)
	}
	if cfg.Token == "" {
		cfg.Token = os.Getenv(envToken)
	}
	if cfg.Token == "" {
		var err error
		if cfg.Token, err = readTokenFile(); err != nil {
			return nil, err
		}
	}
	return client.New(cfg)
}

// parseRef splits NAME[@VERSION]; a missing version is 0 (latest).
func parseRef(ref string) (string, uint64, error) {
	name, vs, hasV := strings.Cut(ref, "@")
	if err := manifest.ValidName(name); err != nil {
		return "", 0, err
	}
	if !hasV || vs == "latest" {
		return name, 0, nil
	}
	v, err := strconv.ParseUint(vs, 10, 64)
	if err != nil || v == 0 {
		return "", 0, &refError{ref}
	}
	return name, v, nil
}

type refError struct{ ref string }

func (e *refError) Error() string {
	return "bad reference " + strconv.Quote(e.ref) + ": want NAME or NAME@VERSION"
}
