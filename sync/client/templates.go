package client

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"io"
	"net/http"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// PublicKey returns the key manifests are checked with: the configured one,
// or else the one the server states, fetched once.
func (c *Client) PublicKey(ctx context.Context) (ed25519.PublicKey, error) {
	c.keyMu.Lock()
	defer c.keyMu.Unlock()
	if c.key != nil {
		return c.key, nil
	}
	resp, err := c.do(ctx, http.MethodGet, c.url(api.PathPubKey), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, ed25519.PublicKeySize+1))
	if err != nil {
		return nil, err
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("server public key is %d bytes, want %d", len(b), ed25519.PublicKeySize)
	}
	c.key = ed25519.PublicKey(b)
	return c.key, nil
}

// Templates lists every template and its versions.
func (c *Client) Templates(ctx context.Context) ([]api.TemplateInfo, error) {
	var out []api.TemplateInfo
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathTemplates), nil, &out)
	return out, err
}

// Version describes name@version (0: latest).
func (c *Client) Version(ctx context.Context, name string, version uint64) (api.VersionInfo, error) {
	var out api.VersionInfo
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathVersion, "{name}", name, "{version}", versionString(version)), nil, &out)
	return out, err
}

// Manifest fetches name@version (0: latest) and checks its signature. It
// returns the manifest and the signed bytes (for callers that keep them).
func (c *Client) Manifest(ctx context.Context, name string, version uint64) (*manifest.Manifest, []byte, error) {
	m, signed, err := c.signed(ctx, c.url(api.PathManifest, "{name}", name, "{version}", versionString(version)))
	if err != nil {
		return nil, nil, fmt.Errorf("manifest of %s@%s: %w", name, versionString(version), err)
	}
	if m.Name != name || (version != 0 && m.Version != version) {
		return nil, nil, fmt.Errorf("manifest of %s@%s: server sent %s@%d", name, versionString(version), m.Name, m.Version)
	}
	return m, signed, nil
}

// signed fetches a signed manifest from u and checks it against the
// server's key; the caller checks that it is the manifest it asked for.
func (c *Client) signed(ctx context.Context, u string) (*manifest.Manifest, []byte, error) {
	key, err := c.PublicKey(ctx)
	if err != nil {
		return nil, nil, err
	}
	resp, err := c.do(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, nil, err
	}
	defer resp.Body.Close()
	signed, err := io.ReadAll(io.LimitReader(resp.Body, api.MaxManifestBytes+1024))
	if err != nil {
		return nil, nil, err
	}
	m, _, err := manifest.Open(signed, key)
	return m, signed, err
}

// Commit sends an unsigned manifest whose blocks are all uploaded; the
// server makes it the template's next version.
func (c *Client) Commit(ctx context.Context, m *manifest.Manifest) (api.VersionInfo, error) {
	var info api.VersionInfo
	body, err := m.MarshalBinary()
	if err != nil {
		return info, err
	}
	err = c.doJSON(ctx, http.MethodPost, c.url(api.PathVersions, "{name}", m.Name), body, &info)
	return info, err
}

// Remove deletes name@version, or every version when version is 0, and
// lets the server collect the blocks no longer used.
func (c *Client) Remove(ctx context.Context, name string, version uint64) (api.GCResult, error) {
	var res api.GCResult
	u := c.url(api.PathTemplate, "{name}", name)
	if version != 0 {
		u = c.url(api.PathVersion, "{name}", name, "{version}", versionString(version))
	}
	err := c.doJSON(ctx, http.MethodDelete, u, nil, &res)
	return res, err
}

// GC asks the server to collect unreferenced blocks.
func (c *Client) GC(ctx context.Context) (api.GCResult, error) {
	var res api.GCResult
	err := c.doJSON(ctx, http.MethodPost, c.url(api.PathGC), []byte{}, &res)
	return res, err
}

// CreateToken asks for a new token that never expires (NewToken: one
// that does).
func (c *Client) CreateToken(ctx context.Context, name, role string) (api.TokenResponse, error) {
	return c.NewToken(ctx, api.TokenRequest{Name: name, Role: role})
}
