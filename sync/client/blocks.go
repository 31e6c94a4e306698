package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Missing returns the IDs of ids the server lacks, asking in chunks that
// respect the server's bounds.
func (c *Client) Missing(ctx context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	var out []blockstore.ID
	for len(ids) > 0 {
		n := min(len(ids), api.MaxIDsPerRequest)
		resp, err := c.do(ctx, http.MethodPost, c.url(api.PathMissing), api.AppendIDs(nil, ids[:n]))
		if err != nil {
			return nil, err
		}
		b, err := io.ReadAll(io.LimitReader(resp.Body, int64(n*blockstore.IDSize)+1))
		resp.Body.Close()
		if err != nil {
			return nil, err
		}
		got, err := api.DecodeIDs(b, n)
		if err != nil {
			return nil, fmt.Errorf("missing: %w", err)
		}
		out = append(out, got...)
		ids = ids[n:]
	}
	return out, nil
}

// Upload sends a block batch (made with api.AppendBlock, at most
// api.MaxUploadBytes). When it returns nil the server holds every block
// durably.
//
// Records may carry delta frames (blockstore.AppendDeltaFrame, at most
// api.MaxDeltasPerUpload of them) against a base block the server holds
// durably. When the server refuses some, the error wraps
// api.ErrDeltaRefused and an *api.DeltaRefusedError (errors.As) naming
// them; the other records were taken, and the named blocks must be sent
// again whole.
func (c *Client) Upload(ctx context.Context, batch []byte) error {
	return c.UploadParts(ctx, [][]byte{batch})
}

// UploadParts is Upload for a batch given as parts sent back to back, such
// as record headers (api.AppendDeferredBlockHeader) and the blocks
// themselves: over plain HTTP they go out with writev, not copied.
func (c *Client) UploadParts(ctx context.Context, parts [][]byte) error {
	resp, err := c.doParts(ctx, http.MethodPost, c.url(api.PathUpload), parts)
	if err != nil {
		return err
	}
	return resp.Body.Close()
}

// Fetch downloads blocks and calls fn with each block's verified plain bytes,
// in the order asked (plain is valid only during the call). A block that
// fails verification stops the fetch with an error wrapping
// blockstore.ErrCorrupt; fn never sees it.
func (c *Client) Fetch(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, plain []byte) error) error {
	return c.FetchFrames(ctx, ids, func(id blockstore.ID, _, plain []byte) error { return fn(id, plain) })
}

// FetchFrames is Fetch that also hands fn the block's frame as the server
// sent it (verified with plain), for callers that store frames: they need
// not compress the block again.
func (c *Client) FetchFrames(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, frame, plain []byte) error) error {
	var plain []byte
	for len(ids) > 0 {
		n := min(len(ids), api.MaxFetchIDs)
		resp, err := c.do(ctx, http.MethodPost, c.url(api.PathFetch), api.AppendIDs(nil, ids[:n]))
		if err != nil {
			return err
		}
		br := api.NewBatchReader(resp.Body)
		for i := range n {
			id, frame, err := br.Next()
			if errors.Is(err, io.EOF) {
				err = fmt.Errorf("%w: batch ended after %d of %d blocks", api.ErrMalformed, i, n)
			}
			if err != nil {
				resp.Body.Close()
				return fmt.Errorf("fetch: %w", err)
			}
			if id != ids[i] {
				resp.Body.Close()
				return fmt.Errorf("fetch: %w: block %d is %s, asked for %s", api.ErrMalformed, i, id.Short(), ids[i].Short())
			}
			plain, err = blockstore.Open(id, frame, plain[:0])
			if err != nil {
				resp.Body.Close()
				return fmt.Errorf("fetch: %w", err)
			}
			c.stats.fetchedBlocks.Add(1)
			c.stats.fetchedBytes.Add(int64(len(frame)))
			c.stats.fetchedPlain.Add(int64(len(plain)))
			if err := fn(id, frame, plain); err != nil {
				resp.Body.Close()
				return err
			}
		}
		if _, _, err := br.Next(); !errors.Is(err, io.EOF) {
			resp.Body.Close()
			return fmt.Errorf("fetch: %w: more blocks than asked for", api.ErrMalformed)
		}
		resp.Body.Close()
		ids = ids[n:]
	}
	return nil
}
