package client

import (
	"sync/atomic"
	"time"
)

// Stats counts what a Client did.
type Stats struct {
	// FetchedBlocks counts the blocks fetched (unicast); FetchedBytes
	// their frames' bytes as they came over the wire, FetchedPlainBytes
	// their bytes once decoded.
	FetchedBlocks, FetchedBytes, FetchedPlainBytes int64
	// Requests counts the requests sent; Unanswered those that got no
	// answer (the server unreachable, the connection cut, a timeout).
	Requests, Unanswered int64
	// LastAnswer is when the server last answered a request, with any
	// status (zero: never).
	LastAnswer time.Time
	// Failovers counts the times another server became the current one
	// (Client); Server is the current one.
	Failovers int64
	Server    string
}

type stats struct {
	fetchedBlocks, fetchedBytes, fetchedPlain atomic.Int64
	requests, unanswered                      atomic.Int64
	failovers                                 atomic.Int64
	lastAnswer                                atomic.Int64 // unix nanoseconds
}

// Stats returns the counts so far.
func (c *Client) Stats() Stats {
	st := Stats{
		FetchedBlocks: c.stats.fetchedBlocks.Load(), FetchedBytes: c.stats.fetchedBytes.Load(), FetchedPlainBytes: c.stats.fetchedPlain.Load(),
		Requests: c.stats.requests.Load(), Unanswered: c.stats.unanswered.Load(),
		Failovers: c.stats.failovers.Load(), Server: c.server().String(),
	}
	if ns := c.stats.lastAnswer.Load(); ns != 0 {
		st.LastAnswer = time.Unix(0, ns)
	}
	return st
}
