package client

import (
	"context"
	"fmt"
	"net/http"
	"net/url"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// WhoAmI returns the principal the client's token speaks for.
func (c *Client) WhoAmI(ctx context.Context) (api.Principal, error) {
	var out api.Principal
	if err := c.doJSON(ctx, http.MethodGet, c.url(api.PathWhoAmI), nil, &out); err != nil {
		return out, err
	}
	// Workstations name directories after it: a server's word is not
	// enough to make "../x" one.
	if err := api.ValidPrincipalName(out.Name); err != nil {
		return api.Principal{}, fmt.Errorf("the server names this token's principal unusably: %w", err)
	}
	return out, nil
}

// Clones lists the caller's clones.
func (c *Client) Clones(ctx context.Context) ([]api.CloneInfo, error) {
	var out []api.CloneInfo
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathClones), nil, &out)
	return out, err
}

// Clone describes one of the caller's clones.
func (c *Client) Clone(ctx context.Context, name string) (api.CloneInfo, error) {
	var out api.CloneInfo
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathClone, "{name}", name), nil, &out)
	return out, err
}

// CreateClone records m (whose blocks are uploaded) as a new clone of
// template@version (0: latest).
func (c *Client) CreateClone(ctx context.Context, m *manifest.Manifest, template string, version uint64) (api.CloneInfo, error) {
	var out api.CloneInfo
	body, err := m.MarshalBinary()
	if err != nil {
		return out, err
	}
	q := url.Values{"template": {template}, "version": {versionString(version)}}
	err = c.doJSON(ctx, http.MethodPost, c.url(api.PathClone, "{name}", m.Name)+"?"+q.Encode(), body, &out)
	return out, err
}

// CloneManifest fetches the latest generation of a clone and checks its
// signature.
func (c *Client) CloneManifest(ctx context.Context, name string) (*manifest.Manifest, []byte, error) {
	m, signed, err := c.signed(ctx, c.url(api.PathCloneSigned, "{name}", name))
	if err != nil {
		return nil, nil, fmt.Errorf("manifest of clone %s: %w", name, err)
	}
	if m.Name != name || m.Kind != manifest.KindClone {
		return nil, nil, fmt.Errorf("manifest of clone %s: server sent %s (kind %d)", name, m.Name, m.Kind)
	}
	return m, signed, nil
}

// RemoveClone deletes one of the caller's clones.
func (c *Client) RemoveClone(ctx context.Context, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, c.url(api.PathClone, "{name}", name), nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}
