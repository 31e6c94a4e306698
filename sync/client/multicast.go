package client

import (
	"context"
	"encoding/json"
	"net/http"

	"github.com/dvfs-project/dvfs/sync/api"
)

// MulticastSessions lists the server's current and recent sessions.
func (c *Client) MulticastSessions(ctx context.Context) ([]api.MulticastSession, error) {
	var out []api.MulticastSession
	err := c.doJSON(ctx, http.MethodGet, c.url(api.PathMulticast), nil, &out)
	return out, err
}

// Push asks the server to multicast a template version (0: latest).
func (c *Client) Push(ctx context.Context, name string, version uint64) (api.MulticastSession, error) {
	var out api.MulticastSession
	body, _ := json.Marshal(api.PushRequest{Template: name, Version: version})
	err := c.doJSON(ctx, http.MethodPost, c.url(api.PathMulticastPush), body, &out)
	return out, err
}
