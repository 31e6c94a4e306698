package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/url"

	"github.com/dvfs-project/dvfs/sync/api"
)

// NewToken asks for a token as req says (an admin's client).
func (c *Client) NewToken(ctx context.Context, req api.TokenRequest) (api.TokenResponse, error) {
	var out api.TokenResponse
	body, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	err = c.doJSON(ctx, http.MethodPost, c.url(api.PathTokens), bytes.Clone(body), &out)
	return out, err
}

// Tokens lists tokens: user's ("" an admin: everyone's; a user gets
// their own), revoked and expired ones too with all.
func (c *Client) Tokens(ctx context.Context, user string, all bool) ([]api.TokenInfo, error) {
	q := url.Values{}
	if user != "" {
		q.Set("user", user)
	}
	if all {
		q.Set("all", "1")
	}
	u := c.url(api.PathTokenList)
	if len(q) > 0 {
		u += "?" + q.Encode()
	}
	var out []api.TokenInfo
	err := c.doJSON(ctx, http.MethodGet, u, nil, &out)
	return out, err
}

// RevokeToken revokes the token whose ID is id.
func (c *Client) RevokeToken(ctx context.Context, id string) (api.TokenInfo, error) {
	var out api.TokenInfo
	if err := api.ValidTokenID(id); err != nil {
		return out, err
	}
	err := c.doJSON(ctx, http.MethodDelete, c.url(api.PathToken, "{id}", id), nil, &out)
	return out, err
}

// Login trades a directory user's password for a token; the client needs
// no token for it.
func (c *Client) Login(ctx context.Context, user, password string) (api.TokenResponse, error) {
	var out api.TokenResponse
	req := api.LoginRequest{User: user, Password: password}
	if err := req.Valid(); err != nil {
		return out, err
	}
	body, err := json.Marshal(req)
	if err != nil {
		return out, err
	}
	err = c.doJSON(ctx, http.MethodPost, c.url(api.PathLogin), body, &out)
	return out, err
}
