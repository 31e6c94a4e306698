package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/api"
)

// AcquireLease asks for (or renews) the right to write a clone. When another
// holder has it, the error is an *HTTPError with Status 409 and Lease set.
func (c *Client) AcquireLease(ctx context.Context, name, holder string, ttl time.Duration, force bool) (api.Lease, error) {
	var out api.Lease
	body, _ := json.Marshal(api.LeaseRequest{Holder: holder, TTL: int(ttl.Seconds()), Force: force})
	err := c.doJSON(ctx, http.MethodPost, c.url(api.PathCloneLease, "{name}", name), body, &out)
	return out, err
}

// ReleaseLease gives a lease back.
func (c *Client) ReleaseLease(ctx context.Context, name, holder string, epoch uint64) error {
	q := url.Values{"holder": {holder}, "epoch": {strconv.FormatUint(epoch, 10)}}
	resp, err := c.do(ctx, http.MethodDelete, c.url(api.PathCloneLease, "{name}", name)+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// CommitGeneration commits m as the generation after parent, under the
// lease epoch. IsFenced and IsConflict tell the refusals apart. With the
// parent's manifest (nil: not known), m travels as a delta against it
// (api.EncodeManifestXOR), and plain if the server cannot take it so.
func (c *Client) CommitGeneration(ctx context.Context, m *manifest.Manifest, parent, epoch uint64, parentManifest *manifest.Manifest) (api.CloneInfo, error) {
	var out api.CloneInfo
	body, err := m.MarshalBinary()
	if err != nil {
		return out, err
	}
	q := url.Values{"parent": {strconv.FormatUint(parent, 10)}, "epoch": {strconv.FormatUint(epoch, 10)}}
	u := c.url(api.PathCloneGenerations, "{name}", m.Name)
	if parentManifest != nil {
		if enc, err := api.EncodeManifestXOR(m, body, parentManifest); err == nil && len(enc) < len(body) {
			dq := url.Values{"encoding": {api.ManifestEncodingXOR}}
			for k, v := range q {
				dq[k] = v
			}
			err := c.doJSON(ctx, http.MethodPost, u+"?"+dq.Encode(), enc, &out)
			var he *HTTPError
			if !errors.As(err, &he) || he.Status != http.StatusUnprocessableEntity && he.Status != http.StatusBadRequest {
				return out, err
			}
		}
	}
	err = c.doJSON(ctx, http.MethodPost, u+"?"+q.Encode(), body, &out)
	return out, err
}

// GenerationManifest fetches one generation of a clone, signature checked.
func (c *Client) GenerationManifest(ctx context.Context, name string, gen uint64) (*manifest.Manifest, error) {
	m, _, err := c.signed(ctx, c.url(api.PathCloneGeneration, "{name}", name, "{gen}", strconv.FormatUint(gen, 10)))
	if err != nil {
		return nil, fmt.Errorf("clone %s generation %d: %w", name, gen, err)
	}
	return m, nil
}

// Snapshot names the clone's latest generation.
func (c *Client) Snapshot(ctx context.Context, name, snap string) (api.SnapshotInfo, error) {
	var out api.SnapshotInfo
	body, _ := json.Marshal(api.SnapshotRequest{Name: snap})
	err := c.doJSON(ctx, http.MethodPost, c.url(api.PathCloneSnapshots, "{name}", name), body, &out)
	return out, err
}

// Revert makes a snapshot's tree the clone's next generation.
func (c *Client) Revert(ctx context.Context, name, snap, holder string) (api.CloneInfo, error) {
	var out api.CloneInfo
	body, _ := json.Marshal(api.RevertRequest{Snapshot: snap, Holder: holder})
	err := c.doJSON(ctx, http.MethodPost, c.url(api.PathCloneRevert, "{name}", name), body, &out)
	return out, err
}

// History lists a clone's generations and snapshots.
func (c *Client) History(ctx context.Context, name string) (api.CloneHistory, error) {
	var out api.CloneHistory
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathCloneHistory, "{name}", name), nil, &out)
	return out, err
}

// IsFenced reports whether err is the server refusing a stale lease epoch.
func IsFenced(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == http.StatusPreconditionFailed
}

// IsConflict reports whether err is a 409 (a stale parent generation, a
// name taken, or a clone leased to another holder).
func IsConflict(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == http.StatusConflict
}
