package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/sync/semaphore"
)

// Limits bounds what clients, one by one and all together, can hold of the
// server: connections, time, and request body memory. Zero fields take the
// values of DefaultLimits.
type Limits struct {
	// MaxConns bounds open connections. At the bound a new connection
	// closes the one idle longest (never sent a request, or between
	// requests); with none idle, it waits for one to end.
	MaxConns int
	// HeaderTimeout bounds reading a request's headers (and a TLS
	// handshake).
	HeaderTimeout time.Duration
	// IdleTimeout closes a connection idle this long between requests.
	IdleTimeout time.Duration
	// MinRate is the slowest a request body may arrive on average, and a
	// response be taken, in bytes a second, after Grace: a body must
	// have arrived whole by Grace + its length / MinRate, and each write
	// of a response must be taken within Grace + its length / MinRate.
	MinRate int64
	// Grace is the time a body or a write gets before MinRate counts.
	Grace time.Duration
	// BodyMemory bounds the request body bytes all requests hold at once.
	// A request takes its Content-Length (or its route's bound, without
	// one) from it before it reads its body, once it is authenticated.
	BodyMemory int64
	// BodyWait bounds how long a request waits for BodyMemory; then it
	// gets 503.
	BodyWait time.Duration
	// BackgroundRate bounds, in bytes a second, what all background
	// fetches (api.HeaderPriority) send together, and BackgroundFetches
	// how many of them are answered at once; the others wait their turn.
	// A background fetch also pauses while readers' fetches are being
	// answered (background.go).
	BackgroundRate    int64
	BackgroundFetches int
}

// DefaultLimits: a lab of 80 workstations holds a few connections each; a
// body at 64 KiB/s is a 0.5 Mbit/s link; 512 MiB of bodies is 64 upload
// batches of 8 MiB (a publish has four in flight), or two of the largest
// manifests.
var DefaultLimits = Limits{
	MaxConns:      4096,
	HeaderTimeout: 10 * time.Second,
	IdleTimeout:   90 * time.Second,
	MinRate:       64 << 10,
	Grace:         20 * time.Second,
	BodyMemory:    512 << 20,
	BodyWait:      2 * time.Minute,
	// An eighth of a 1 Gbit/s link: workstations that fill their caches
	// by unicast (a clone opened before the multicast push reached it)
	// do not become the storm multicast is there to prevent.
	BackgroundRate:    16 << 20,
	BackgroundFetches: 2,
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits
	orDefault(&l.MaxConns, d.MaxConns)
	orDefault(&l.HeaderTimeout, d.HeaderTimeout)
	orDefault(&l.IdleTimeout, d.IdleTimeout)
	orDefault(&l.MinRate, d.MinRate)
	orDefault(&l.Grace, d.Grace)
	orDefault(&l.BodyMemory, d.BodyMemory)
	orDefault(&l.BodyWait, d.BodyWait)
	orDefault(&l.BackgroundRate, d.BackgroundRate)
	orDefault(&l.BackgroundFetches, d.BackgroundFetches)
	return l
}

// orDefault sets *v to d unless it is positive.
func orDefault[T int | int64 | time.Duration](v *T, d T) {
	if *v <= 0 {
		*v = d
	}
}

// within is how long n bytes may take at l's rate.
func (l Limits) within(n int64) time.Duration {
	return l.Grace + time.Duration(float64(n)/float64(l.MinRate)*float64(time.Second))
}

var (
	// errBusy: the server's body memory stayed taken for BodyWait (503).
	errBusy = errors.New("server busy: too many request bodies in flight, retry later")
	// errTooMany: the client's user (or, before it is known, address)
	// held its share of the body memory for BodyWait (429).
	errTooMany = errors.New("too many request bodies in flight for this user, retry later")
	// errTooLarge: a body larger than its route allows (413), known from
	// its Content-Length before any of it is read.
	errTooLarge = errors.New("request body too large")
)

// bodyError is a failure to read a request's body: the client's fault
// (400; 408 when it came too slowly; 503 when the server had no memory
// for it).
type bodyError struct{ err error }

func (e *bodyError) Error() string { return "request body: " + e.err.Error() }
func (e *bodyError) Unwrap() error { return e.err }

// bodies is the server-wide budget of request body bytes. One client
// holds (or waits in line for) at most a quarter of it, or one body of
// any size, so that a client cannot queue ahead of all others. A client
// is the user a token names: one user sending from many addresses (eight
// in the load test) took the whole budget when the share was per
// address, and a workstation's 8 MiB uploads waited minutes behind its
// 200 MiB bodies.
type bodies struct {
	sem   *semaphore.Weighted
	share int64 // most one client holds or waits for, beyond one body

	mu      sync.Mutex
	byAddr  map[string]int64 // by client
	changed chan struct{}    // closed when a client's share shrinks
	held    int64
	peak    int64     // most held since memory was last returned
	freedAt time.Time // when memory was last returned to the OS
}

func newBodies(limit int64) bodies {
	return bodies{sem: semaphore.NewWeighted(limit), share: limit / 4, byAddr: make(map[string]int64), changed: make(chan struct{})}
}

// reserve counts n bytes against the client addr's share, waiting while
// the share is taken.
func (b *bodies) reserve(ctx context.Context, addr string, n int64) error {
	for {
		b.mu.Lock()
		if have := b.byAddr[addr]; have == 0 || have+n <= b.share {
			b.byAddr[addr] = have + n
			b.mu.Unlock()
			return nil
		}
		ch := b.changed
		b.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("%w (%w)", errTooMany, ctx.Err())
		}
	}
}

func (b *bodies) unreserve(addr string, n int64) {
	b.mu.Lock()
	if b.byAddr[addr] -= n; b.byAddr[addr] <= 0 {
		delete(b.byAddr, addr)
	}
	close(b.changed)
	b.changed = make(chan struct{})
	b.mu.Unlock()
}

// freeAfter is the peak of body bytes above which, once no body is held,
// the server hands free memory back to the OS; at most once per
// freeEvery.
const (
	freeAfter = 64 << 20
	freeEvery = 10 * time.Second
)

func (b *bodies) acquire(ctx context.Context, addr string, n int64) error {
	if err := b.reserve(ctx, addr, n); err != nil {
		return err
	}
	if err := b.sem.Acquire(ctx, n); err != nil {
		b.unreserve(addr, n)
		return err
	}
	b.mu.Lock()
	b.held += n
	b.peak = max(b.peak, b.held)
	b.mu.Unlock()
	return nil
}

// release gives n bytes back. Once nothing is held after a peak of large
// bodies, the Go runtime is told to return the freed heap now: it would
// otherwise keep it, and the server's RSS, for minutes.
func (b *bodies) release(addr string, n int64) {
	b.sem.Release(n)
	b.unreserve(addr, n)
	b.mu.Lock()
	b.held -= n
	free := b.held == 0 && b.peak >= freeAfter && time.Since(b.freedAt) >= freeEvery
	if free {
		b.peak, b.freedAt = 0, time.Now()
	}
	b.mu.Unlock()
	if free {
		go debug.FreeOSMemory()
	}
}

// limitedBody is a request body that takes its bytes from the server's
// budget before its first read and must arrive at Limits.MinRate.
type limitedBody struct {
	io.ReadCloser
	r      *http.Request
	rc     *http.ResponseController
	s      *Server
	weight int64 // bytes taken from the budget
	max    int64 // the route's bound
	// user is whom the request's token names, once authenticated; the
	// budget's share is by user, and by address before that.
	user   string
	client string // whose share weight counts against

	admitted bool
	err      error // of admission
	start    time.Time
	n        int64
	deadline time.Time // the read deadline set last
	eof      bool      // read whole
	failed   bool      // a read failed
}

// admit takes the body's bytes from the server's budget (once).
func (b *limitedBody) admit() error {
	if b.admitted {
		return b.err
	}
	b.admitted = true
	defer func() {
		// Refused: the server answers at once and reads no more of it
		// (done), also when the handler asked by admitBody, not Read.
		b.failed = b.err != nil
	}()
	n := b.r.ContentLength
	if n < 0 {
		n = b.max
	}
	if n > b.s.limits.BodyMemory {
		b.err = &bodyError{fmt.Errorf("%w: %d bytes, more than the server's %d for all bodies", errTooLarge, n, b.s.limits.BodyMemory)}
		return b.err
	}
	if n > 0 {
		ctx, cancel := context.WithTimeout(b.r.Context(), b.s.limits.BodyWait)
		defer cancel()
		b.client = "addr " + clientHost(b.r)
		if b.user != "" {
			b.client = "user " + b.user
		}
		if err := b.s.bodies.acquire(ctx, b.client, n); err != nil {
			if b.r.Context().Err() == nil && !errors.Is(err, errTooMany) {
				err = errBusy
			}
			b.err = &bodyError{err}
			return b.err
		}
		b.weight = n
	}
	b.start = time.Now()
	return nil
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if err := b.admit(); err != nil {
		b.failed = true
		return 0, err
	}
	// The deadline only moves later as bytes arrive; set it again once
	// the one set last is near, not at every read.
	if now := time.Now(); b.deadline.Sub(now) < b.s.limits.Grace/2 {
		b.deadline = b.start.Add(b.s.limits.within(b.n))
		_ = b.rc.SetReadDeadline(b.deadline)
	}
	n, err := b.ReadCloser.Read(p)
	b.n += int64(n)
	switch {
	case err == io.EOF:
		// Lift the deadline, so that the server's watch for the
		// client's close is not cut short while the handler works.
		b.eof = true
		if !b.deadline.IsZero() {
			_ = b.rc.SetReadDeadline(time.Time{})
			b.deadline = time.Time{}
		}
	case err != nil:
		b.failed = true
		err = &bodyError{err}
	}
	return n, err
}

// done bounds what the server reads of the body after the handler: it
// reads on up to 256 KiB of a body left unread to keep the connection,
// with no deadline of its own. A body that failed gets none of that time.
func (b *limitedBody) done() {
	switch {
	case b.failed:
		_ = b.rc.SetReadDeadline(time.Now())
	case !b.eof:
		_ = b.rc.SetReadDeadline(time.Now().Add(b.s.limits.Grace))
	}
}

// admitBody takes r's body bytes from the server's budget before a handler
// allocates room for them. Reading the body does it too.
func admitBody(r *http.Request) error {
	if b, ok := r.Body.(*limitedBody); ok {
		return b.admit()
	}
	return nil
}

// serveLimited runs the routed handler with r's body bounded: refused with
// 413 at once when its Content-Length is over its route's bound, else
// taken from the budget when first read and cut off below MinRate.
func (s *Server) serveLimited(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	limit, ok := s.bodyMax[pattern]
	if !ok {
		limit = defaultBodyMax
	}
	if r.ContentLength > limit {
		_ = http.NewResponseController(w).SetReadDeadline(time.Now())
		s.fail(w, r, http.StatusRequestEntityTooLarge, &bodyError{fmt.Errorf("%w: %d bytes, more than %d for %s", errTooLarge, r.ContentLength, limit, pattern)})
		return
	}
	if r.Body == nil || r.Body == http.NoBody {
		s.mux.ServeHTTP(w, r)
		return
	}
	b := &limitedBody{ReadCloser: r.Body, r: r, rc: http.NewResponseController(w), s: s, max: limit}
	r.Body = b
	defer func() {
		b.done()
		if b.weight > 0 {
			s.bodies.release(b.client, b.weight)
		}
	}()
	s.mux.ServeHTTP(w, r)
}

// clientHost is the address r came from, without its port.
func clientHost(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// defaultBodyMax bounds the body of a route that names no bound of its own.
const defaultBodyMax = 64 << 10
