package server

import (
	"container/list"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// connLimiter is a listener that keeps at most max connections open. At
// the bound, a new connection closes the one idle longest: one that has
// sent no request yet, or sits between requests. With none idle, Accept
// waits until a connection ends.
//
// golang.org/x/net/netutil.LimitListener only waits: with the bound taken
// by connections that never send a request, new ones, a workstation's
// among them, queue in the kernel behind them until each times out.
//
// Its connections also bound every write: each must be taken within
// Limits.Grace plus its length at Limits.MinRate, so a client that reads
// a response slowly, or not at all, lets go of it.
type connLimiter struct {
	net.Listener
	lim Limits
	log *slog.Logger

	mu     sync.Mutex
	cond   *sync.Cond
	open   int
	idle   list.List // of *limitedConn, longest idle first
	closed bool

	evicted   int       // since the last log line
	loggedAt  time.Time // of the last log line
	lastEvict string    // client address of the last connection closed
}

func newConnLimiter(ln net.Listener, lim Limits, log *slog.Logger) *connLimiter {
	l := &connLimiter{Listener: ln, lim: lim, log: log}
	l.cond = sync.NewCond(&l.mu)
	return l
}

// evictLogEvery spaces the log lines about connections closed at the
// bound: a flood would otherwise write one line for each.
const evictLogEvery = 10 * time.Second

func (l *connLimiter) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.mu.Lock()
	for l.open >= l.lim.MaxConns && !l.closed {
		e := l.idle.Front()
		if e == nil {
			l.cond.Wait()
			continue
		}
		victim := l.idle.Remove(e).(*limitedConn)
		victim.elem = nil
		l.evicted++
		l.lastEvict = victim.RemoteAddr().String()
		var logN int
		if time.Since(l.loggedAt) >= evictLogEvery {
			logN, l.evicted, l.loggedAt = l.evicted, 0, time.Now()
		}
		last := l.lastEvict
		l.mu.Unlock()
		if logN > 0 {
			l.log.Warn("connection limit reached: closed idle connections for new ones",
				"closed", logN, "max_conns", l.lim.MaxConns, "client", last)
		}
		victim.Close()
		l.mu.Lock()
	}
	if l.closed {
		l.mu.Unlock()
		c.Close()
		return nil, net.ErrClosed
	}
	l.open++
	lc := &limitedConn{Conn: c, l: l}
	lc.elem = l.idle.PushBack(lc)
	l.mu.Unlock()
	return lc, nil
}

func (l *connLimiter) Close() error {
	l.mu.Lock()
	l.closed = true
	l.cond.Broadcast()
	l.mu.Unlock()
	return l.Listener.Close()
}

// connState is the http.Server's ConnState hook: it keeps the list of idle
// connections.
func (l *connLimiter) connState(c net.Conn, st http.ConnState) {
	if nc, ok := c.(interface{ NetConn() net.Conn }); ok { // TLS
		c = nc.NetConn()
	}
	lc, ok := c.(*limitedConn)
	if !ok {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if lc.elem != nil {
		l.idle.Remove(lc.elem)
		lc.elem = nil
	}
	switch st {
	case http.StateNew, http.StateIdle:
		if !lc.closed {
			lc.elem = l.idle.PushBack(lc)
			l.cond.Signal()
		}
	}
}

// limitedConn is a connection counted by its connLimiter.
type limitedConn struct {
	net.Conn
	l      *connLimiter
	elem   *list.Element // in l.idle while idle; under l.mu
	closed bool          // under l.mu
}

func (c *limitedConn) Write(p []byte) (int, error) {
	_ = c.Conn.SetWriteDeadline(time.Now().Add(c.l.lim.within(int64(len(p)))))
	return c.Conn.Write(p)
}

func (c *limitedConn) Close() error {
	l := c.l
	l.mu.Lock()
	if !c.closed {
		c.closed = true
		l.open--
		if c.elem != nil {
			l.idle.Remove(c.elem)
			c.elem = nil
		}
		l.cond.Signal()
	}
	l.mu.Unlock()
	return c.Conn.Close()
}

// Listen returns ln bounded by s's Limits (connections, write rate) and an
// http.Server for s on it with the Limits' timeouts. errorLog takes the
// http.Server's own messages (TLS handshakes, panics).
func (s *Server) Listen(ln net.Listener) (net.Listener, *http.Server) {
	cl := newConnLimiter(ln, s.limits, s.log)
	hs := &http.Server{
		Handler:           s,
		ReadHeaderTimeout: s.limits.HeaderTimeout,
		IdleTimeout:       s.limits.IdleTimeout,
		ConnState:         cl.connState,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	return cl, hs
}
