package server

import (
	"context"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// background orders fetches by who waits for them. A reader's fetch (a
// guest waiting on a block) goes out at once. A background fetch (a
// workstation filling its cache with blocks nobody reads yet) waits for
// one of Limits.BackgroundFetches turns, sends at most
// Limits.BackgroundRate bytes a second together with the other background
// fetches, and pauses while any reader's fetch is being answered and for
// demandQuiet after the last one. Without this, every workstation that
// opened a clone before its cache was filled pulled the whole template
// at the speed of the server's link, and the readers of all of them
// queued behind it: the restore storm again, moved from the reads to the
// fills.
type background struct {
	turns chan struct{}
	lim   *rate.Limiter
	// demand counts readers' fetches being answered; lastDemand is when
	// the last one ended (UnixNano).
	demand     atomic.Int64
	lastDemand atomic.Int64
	// fetches and bytes count the background fetches given a turn and
	// the bytes they were let send; paused the pauses they made for
	// readers.
	fetches, bytes, paused atomic.Int64
}

// demandQuiet is how long background fetches keep pausing after the last
// reader's fetch ended: a reader's next miss follows within milliseconds.
const demandQuiet = 50 * time.Millisecond

// bgBurst is the rate limiter's burst, and the most a background fetch
// sends before it asks again.
const bgBurst = 256 << 10

func newBackground(l Limits) *background {
	return &background{
		turns: make(chan struct{}, l.BackgroundFetches),
		lim:   rate.NewLimiter(rate.Limit(l.BackgroundRate), bgBurst),
	}
}

// readerStart marks a reader's fetch as being answered until the returned
// func is called.
func (b *background) readerStart() func() {
	b.demand.Add(1)
	return func() {
		b.lastDemand.Store(time.Now().UnixNano())
		b.demand.Add(-1)
	}
}

// turn waits for a background fetch's turn; release gives it back.
func (b *background) turn(ctx context.Context) (release func(), err error) {
	select {
	case b.turns <- struct{}{}:
		b.fetches.Add(1)
		return func() { <-b.turns }, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// pace waits until a background fetch may send n more bytes: no reader's
// fetch is being answered or ended within demandQuiet, and the rate
// allows them.
func (b *background) pace(ctx context.Context, n int) error {
	for paused := false; ; {
		quietFor := time.Duration(time.Now().UnixNano() - b.lastDemand.Load())
		if b.demand.Load() == 0 && quietFor >= demandQuiet {
			break
		}
		if !paused {
			paused = true
			b.paused.Add(1)
		}
		wait := max(demandQuiet-quietFor, 5*time.Millisecond)
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		}
	}
	for n > 0 {
		k := min(n, bgBurst)
		if err := b.lim.WaitN(ctx, k); err != nil {
			return err
		}
		n -= k
		b.bytes.Add(int64(k))
	}
	return nil
}

// pacedWriter is a background fetch's response: each write waits for
// pace. Under the response's buffer, it paces what goes to the socket.
type pacedWriter struct {
	w   io.Writer
	bg  *background
	ctx context.Context
}

func (p pacedWriter) Write(b []byte) (int, error) {
	if err := p.bg.pace(p.ctx, len(b)); err != nil {
		return 0, err
	}
	return p.w.Write(b)
}

// BackgroundStats counts the background fetches answered
// (api.HeaderPriority), the bytes of block records they sent, and the
// pauses they made for readers' fetches.
type BackgroundStats struct {
	Fetches, Bytes, Pauses int64
}

// Background reports what the background fetches did so far.
func (s *Server) Background() BackgroundStats {
	return BackgroundStats{Fetches: s.bg.fetches.Load(), Bytes: s.bg.bytes.Load(), Pauses: s.bg.paused.Load()}
}
