package server

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/sync/api"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// Files in a server's data directory besides the store.
const (
	KeyFile        = "server.key"  // ed25519 signing key, PKCS#8 PEM, mode 0600
	PubKeyFile     = "server.pub"  // its public half, for workstations to pin
	AdminTokenFile = "admin.token" // the first admin token, mode 0600
)

// LoadOrCreateKey reads the signing key from dir, making one on first start.
// It reports whether the key is new.
func LoadOrCreateKey(dir string) (ed25519.PrivateKey, bool, error) {
	path := filepath.Join(dir, KeyFile)
	b, err := os.ReadFile(path)
	if err == nil {
		blk, _ := pem.Decode(b)
		if blk == nil {
			return nil, false, fmt.Errorf("%s: no PEM block", path)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, false, fmt.Errorf("%s: %w", path, err)
		}
		key, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, false, fmt.Errorf("%s: not an ed25519 key", path)
		}
		return key, false, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, false, err
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, false, err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, false, err
	}
	pubDER, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, false, err
	}
	if err := diskio.WriteFileSync(filepath.Join(dir, PubKeyFile), pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), 0o644); err != nil {
		return nil, false, err
	}
	if err := diskio.WriteFileSync(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return nil, false, err
	}
	return key, true, nil
}

// EnsureAdminToken makes an admin token on first start (when the repository
// has no token at all), writes it to dir/admin.token, and returns its path;
// it returns "" when tokens exist already.
func EnsureAdminToken(ctx context.Context, r *repo.Repo, dir string) (string, error) {
	has, err := r.HasTokens(ctx)
	if err != nil || has {
		return "", err
	}
	token, err := r.CreateToken(ctx, "admin", api.RoleAdmin)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, AdminTokenFile)
	return path, diskio.WriteFileSync(path, []byte(token+"\n"), 0o600)
}
