// Package client talks to a dvfs server: listing and fetching templates,
// uploading blocks and committing versions. Every block it returns has been
// checked against its ID, and every manifest against the server's key.
package client

import (
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Config configures a Client.
type Config struct {
	// Server is the server's base URL, e.g. http://127.0.0.1:7420.
	Server string
	// Token is the bearer token sent with every request.
	Token string
	// ServerKey is the public key manifests must be signed with; nil
	// trusts the key the server states (trust on first use: callers that
	// keep state should pin what PublicKey returns).
	ServerKey ed25519.PublicKey
	// CACert is a PEM file of the CA that signed the server's TLS
	// certificate; empty uses the system roots.
	CACert string
	// Timeout bounds each request; 0 means DefaultTimeout.
	Timeout time.Duration
}

// DefaultTimeout is Config.Timeout's default: long enough for a 64 MiB
// batch on a slow link.
const DefaultTimeout = 5 * time.Minute

// Client is a connection to one server. Safe for concurrent use.
type Client struct {
	base  *url.URL
	token string
	hc    *http.Client

	keyMu sync.Mutex
	key   ed25519.PublicKey

	stats stats
}

// New returns a client for cfg.Server.
func New(cfg Config) (*Client, error) {
	if cfg.Server == "" {
		return nil, errors.New("no server given (use --server or DVFS_SERVER)")
	}
	u, err := url.Parse(strings.TrimRight(cfg.Server, "/"))
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("server %q is not an http:// or https:// URL", cfg.Server)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConnsPerHost = 16
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return vecConn{c}, nil
	}
	if cfg.CACert != "" {
		pemBytes, err := os.ReadFile(cfg.CACert)
		if err != nil {
			return nil, err
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pemBytes) {
			return nil, fmt.Errorf("%s: no certificate found", cfg.CACert)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	timeout := cfg.Timeout
	if timeout == 0 {
		timeout = DefaultTimeout
	}
	return &Client{
		base:  u,
		token: cfg.Token,
		hc:    &http.Client{Transport: tr, Timeout: timeout},
		key:   cfg.ServerKey,
	}, nil
}

// HTTPError is a non-2xx answer from the server.
type HTTPError struct {
	Status  int
	Message string
	// Missing lists blocks a commit lacked (409).
	Missing []string
	// Lease is the lease that refused the request (409).
	Lease *api.Lease
	// Delta names the delta blocks of an upload the server refused (409,
	// 422); the error then wraps it, and api.ErrDeltaRefused.
	Delta *api.DeltaRefusedError
}

// Unwrap returns Delta, when the server refused deltas.
func (e *HTTPError) Unwrap() error {
	if e.Delta == nil {
		return nil
	}
	return e.Delta
}

// deltaRefusal decodes the delta blocks an Error names, if any.
func deltaRefusal(e *api.Error) (*api.DeltaRefusedError, error) {
	if len(e.DeltaBaseMissing)+len(e.DeltaMismatch) == 0 {
		return nil, nil
	}
	var d api.DeltaRefusedError
	for _, l := range []struct {
		in  []string
		out *[]blockstore.ID
	}{{e.DeltaBaseMissing, &d.BaseMissing}, {e.DeltaMismatch, &d.Mismatch}} {
		for _, s := range l.in {
			id, err := blockstore.ParseID(s)
			if err != nil {
				return nil, fmt.Errorf("%w: refused delta block %q: %v", api.ErrMalformed, s, err)
			}
			*l.out = append(*l.out, id)
		}
	}
	return &d, nil
}

func (e *HTTPError) Error() string {
	return fmt.Sprintf("server: %s (%d %s)", e.Message, e.Status, http.StatusText(e.Status))
}

// IsNotFound reports whether err is a 404 from the server.
func IsNotFound(err error) bool {
	var he *HTTPError
	return errors.As(err, &he) && he.Status == http.StatusNotFound
}

func (c *Client) url(path string, vals ...string) string {
	for i := 0; i+1 < len(vals); i += 2 {
		path = strings.Replace(path, vals[i], url.PathEscape(vals[i+1]), 1)
	}
	return c.base.String() + path
}

// do sends a request and returns the response when its status is 2xx.
func (c *Client) do(ctx context.Context, method, u string, body []byte) (*http.Response, error) {
	if body == nil {
		return c.doParts(ctx, method, u, nil)
	}
	return c.doParts(ctx, method, u, [][]byte{body})
}

// doParts is do with a body given as parts sent back to back (nil: no
// body), without copying them into one buffer (vecbody.go).
func (c *Client) doParts(ctx context.Context, method, u string, parts [][]byte) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, method, u, nil)
	if err != nil {
		return nil, err
	}
	if parts != nil {
		pb := newPartsBody(parts)
		req.Body, req.ContentLength = pb, pb.len()
		req.GetBody = func() (io.ReadCloser, error) { return newPartsBody(parts), nil }
		if req.ContentLength == 0 {
			req.Body, req.GetBody = http.NoBody, nil
		}
		req.Header.Set("Content-Type", "application/octet-stream")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	c.stats.requests.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.stats.unanswered.Add(1)
		return nil, err
	}
	c.stats.lastAnswer.Store(time.Now().UnixNano())
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	var apiErr api.Error
	he := &HTTPError{Status: resp.StatusCode}
	if json.Unmarshal(b, &apiErr) == nil && apiErr.Error != "" {
		he.Message, he.Missing, he.Lease = apiErr.Error, apiErr.Missing, apiErr.Lease
		if he.Delta, err = deltaRefusal(&apiErr); err != nil {
			return nil, fmt.Errorf("%s: %w", he.Error(), err)
		}
	} else {
		he.Message = strings.TrimSpace(string(b))
	}
	return nil, he
}

func (c *Client) doJSON(ctx context.Context, method, u string, body []byte, out any) error {
	resp, err := c.do(ctx, method, u, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	return json.NewDecoder(io.LimitReader(resp.Body, api.MaxJSONBytes*16)).Decode(out)
}

func versionString(v uint64) string {
	if v == 0 {
		return "latest"
	}
	return strconv.FormatUint(v, 10)
}

// StatusCode is the HTTP status of the answer.
func (e *HTTPError) StatusCode() int { return e.Status }

// LeaseHolder is the lease that refused the request, if one did.
func (e *HTTPError) LeaseHolder() (api.Lease, bool) {
	if e.Lease == nil {
		return api.Lease{}, false
	}
	return *e.Lease, true
}
