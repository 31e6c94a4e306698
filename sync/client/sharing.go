package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// ownerQuery is the query naming owner's clone ("" for the caller's).
func ownerQuery(owner string) string {
	if owner == "" {
		return ""
	}
	return "?" + url.Values{api.QueryOwner: {owner}}.Encode()
}

// ClonesOf lists owner's clones (an admin's right for another's).
func (c *Client) ClonesOf(ctx context.Context, owner string) ([]api.CloneInfo, error) {
	var out []api.CloneInfo
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathClones)+ownerQuery(owner), nil, &out)
	return out, err
}

// AllClones lists every user's clones (an admin's right).
func (c *Client) AllClones(ctx context.Context) ([]api.CloneInfo, error) {
	var out []api.CloneInfo
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathClones)+"?all", nil, &out)
	return out, err
}

// SharedClones lists the clones shared with the caller's groups.
func (c *Client) SharedClones(ctx context.Context) ([]api.CloneInfo, error) {
	var out []api.CloneInfo
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathClones)+"?shared", nil, &out)
	return out, err
}

// RemoveCloneOf deletes owner's clone name (an admin's right for
// another's).
func (c *Client) RemoveCloneOf(ctx context.Context, owner, name string) error {
	resp, err := c.do(ctx, http.MethodDelete, c.url(api.PathClone, "{name}", name)+ownerQuery(owner), nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Share shares the caller's clone name read-only with group, or stops
// sharing it.
func (c *Client) Share(ctx context.Context, name, group string, share bool) (api.CloneInfo, error) {
	var out api.CloneInfo
	method := http.MethodPut
	if !share {
		method = http.MethodDelete
	}
	err := c.doJSON(ctx, method, c.url(api.PathCloneShare, "{name}", name, "{group}", group), nil, &out)
	return out, err
}

// CloneManifestOf fetches the latest generation of owner's clone name (one
// shared with the caller, or any as an admin) and checks its signature.
func (c *Client) CloneManifestOf(ctx context.Context, owner, name string) (*manifest.Manifest, []byte, error) {
	m, signed, err := c.signed(ctx, c.url(api.PathCloneSigned, "{name}", name)+ownerQuery(owner))
	if err != nil {
		return nil, nil, fmt.Errorf("manifest of clone %s/%s: %w", owner, name, err)
	}
	if m.Name != name || m.Kind != manifest.KindClone {
		return nil, nil, fmt.Errorf("manifest of clone %s/%s: server sent %s (kind %d)", owner, name, m.Name, m.Kind)
	}
	return m, signed, nil
}

// CreateCloneFrom records m (whose blocks are uploaded) as a new clone of
// the caller's made from owner's clone src, shared with them.
func (c *Client) CreateCloneFrom(ctx context.Context, m *manifest.Manifest, owner, src string) (api.CloneInfo, error) {
	var out api.CloneInfo
	body, err := m.MarshalBinary()
	if err != nil {
		return out, err
	}
	q := url.Values{api.QueryFrom: {owner + "/" + src}}
	err = c.doJSON(ctx, http.MethodPost, c.url(api.PathClone, "{name}", m.Name)+"?"+q.Encode(), body, &out)
	return out, err
}

// Quota returns user's quota and usage of clone data.
func (c *Client) Quota(ctx context.Context, user string) (api.QuotaInfo, error) {
	var out api.QuotaInfo
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathQuota, "{user}", user), nil, &out)
	return out, err
}

// SetQuota sets user's quota on clone data (an admin's right).
func (c *Client) SetQuota(ctx context.Context, user string, req api.QuotaRequest) (api.QuotaInfo, error) {
	var out api.QuotaInfo
	body, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	err = c.doJSON(ctx, http.MethodPut, c.url(api.PathQuota, "{user}", user), body, &out)
	return out, err
}
