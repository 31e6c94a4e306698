package server

import (
	"cmp"
	"io"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
)

// RouteStats counts the requests of one route that ended with one status
// code, and the response body bytes they sent.
type RouteStats struct {
	// Route is the route's pattern ("GET /v1/templates"); requests no
	// route matched have "".
	Route    string
	Code     int
	Requests int64
	Bytes    int64
}

type routeKey struct {
	route string
	code  int
}

type routeCounts struct{ requests, bytes atomic.Int64 }

// requestStats counts requests by route and status code.
type requestStats struct{ m sync.Map } // routeKey -> *routeCounts

func (rs *requestStats) add(route string, code int, bytes int64) {
	k := routeKey{route, code}
	v, ok := rs.m.Load(k)
	if !ok {
		v, _ = rs.m.LoadOrStore(k, new(routeCounts))
	}
	c := v.(*routeCounts)
	c.requests.Add(1)
	c.bytes.Add(bytes)
}

// Stats returns the requests answered so far by route and status code,
// sorted by route and code.
func (s *Server) Stats() []RouteStats {
	var out []RouteStats
	s.requests.m.Range(func(k, v any) bool {
		key, c := k.(routeKey), v.(*routeCounts)
		out = append(out, RouteStats{Route: key.route, Code: key.code, Requests: c.requests.Load(), Bytes: c.bytes.Load()})
		return true
	})
	slices.SortFunc(out, func(a, b RouteStats) int {
		return cmp.Or(cmp.Compare(a.Route, b.Route), cmp.Compare(a.Code, b.Code))
	})
	return out
}

// countingWriter records a response's status code and body bytes. It
// unwraps for http.ResponseController (deadlines, flushes) and passes
// ReadFrom on, so a response keeps the writer's fast paths.
type countingWriter struct {
	http.ResponseWriter
	code  int
	bytes int64
}

func (w *countingWriter) WriteHeader(code int) {
	if w.code == 0 {
		w.code = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.code == 0 {
		w.code = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

func (w *countingWriter) Flush() {
	if f, ok := w.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
