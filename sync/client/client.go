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
	"sync/atomic"
	"time"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/sync/api"
)

// Config configures a Client.
type Config struct {
	// Server is the server's base URL, e.g. http://127.0.0.1:7420, or
	// several, comma-separated: servers of one repository, which the
	// client fails over between (Client). A name with several addresses
	// also fails over, when a connection is made.
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

// Client is a connection to a server. Safe for concurrent use.
//
// Given several servers, it sends every request to the current one, and
// when a request cannot reach it (the connection is refused, times out,
// or breaks while the request is sent), sends it to the next, which
// becomes current. A request that reached a server that then failed is
// not sent again (it may have been applied): its error goes to the
// caller, as with one server, except for reads (GET, HEAD, and the
// lookups of block IDs: missing, fetch) and block uploads, which change
// nothing when sent again, and go to the next.
type Client struct {
	bases []*url.URL
	cur   atomic.Int32 // index into bases
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
	var bases []*url.URL
	for _, s := range strings.Split(cfg.Server, ",") {
		u, err := url.Parse(strings.TrimRight(strings.TrimSpace(s), "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("server %q is not an http:// or https:// URL", s)
		}
		bases = append(bases, u)
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
		bases: bases,
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

// url returns the path of an API call (api.Path*, with its {names}
// replaced by vals in turn): do sends it to a server.
func (c *Client) url(path string, vals ...string) string {
	for i := 0; i+1 < len(vals); i += 2 {
		path = strings.Replace(path, vals[i], url.PathEscape(vals[i+1]), 1)
	}
	return path
}

// server returns the current server's base URL.
func (c *Client) server() *url.URL { return c.bases[c.cur.Load()] }

// Servers returns the base URLs the client was given, the current one
// first.
func (c *Client) Servers() []string {
	cur := int(c.cur.Load())
	out := make([]string, 0, len(c.bases))
	for i := range c.bases {
		out = append(out, c.bases[(cur+i)%len(c.bases)].String())
	}
	return out
}

// idempotent reports whether sending a request again, to another server,
// changes nothing it did not: reads (GET and HEAD, and the POSTs that look
// up block IDs: missing, fetch) and block uploads (a block is stored under
// the hash of its bytes, once however often it comes).
func idempotent(method, path string) bool {
	return method == http.MethodGet || method == http.MethodHead ||
		method == http.MethodPost && (path == api.PathMissing || path == api.PathFetch || path == api.PathUpload)
}

// unreached reports whether err says a request never reached the server
// whole: no connection could be made, or sending it failed (a connection
// the server closed or reset). A server acts on a request only once it
// has all of it.
func unreached(err error) bool {
	var op *net.OpError
	if !errors.As(err, &op) {
		return false
	}
	switch op.Op {
	case "dial", "write", "writev", "wsasend": // wsasend: Windows's write
		return true
	}
	return false
}

// send sends one request to the full URL u.
func (c *Client) send(ctx context.Context, method, u string, parts [][]byte) (*http.Response, error) {
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
	if api.IsBackground(ctx) {
		req.Header.Set(api.HeaderPriority, api.PriorityBackground)
	}
	c.stats.requests.Add(1)
	resp, err := c.hc.Do(req)
	if err != nil {
		c.stats.unanswered.Add(1)
	}
	return resp, err
}

// do sends a request and returns the response when its status is 2xx.
func (c *Client) do(ctx context.Context, method, u string, body []byte) (*http.Response, error) {
	if body == nil {
		return c.doParts(ctx, method, u, nil)
	}
	return c.doParts(ctx, method, u, [][]byte{body})
}

// doParts is do with a body given as parts sent back to back (nil: no
// body), without copying them into one buffer (vecbody.go). path is
// url's; each server is tried at most once (Client).
func (c *Client) doParts(ctx context.Context, method, path string, parts [][]byte) (*http.Response, error) {
	var resp *http.Response
	var err error
	first := c.cur.Load()
	for k := range int32(len(c.bases)) {
		i := (first + k) % int32(len(c.bases))
		resp, err = c.send(ctx, method, c.bases[i].String()+path, parts)
		if err == nil {
			if i != first && c.cur.CompareAndSwap(first, i) {
				c.stats.failovers.Add(1)
			}
			break
		}
		if ctx.Err() != nil || !(unreached(err) || idempotent(method, path)) {
			break
		}
	}
	if err != nil {
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

// LacksBlocks reports whether the server refused a commit because it lacks
// blocks the manifest names (409 with their list): blocks it answered an
// upload of and lost (killed before storing them, or its disk failed
// them). Not a conflict: send them again and commit again.
func (e *HTTPError) LacksBlocks() bool {
	return e.Status == http.StatusConflict && len(e.Missing) > 0
}

// LeaseHolder is the lease that refused the request, if one did.
func (e *HTTPError) LeaseHolder() (api.Lease, bool) {
	if e.Lease == nil {
		return api.Lease{}, false
	}
	return *e.Lease, true
}
