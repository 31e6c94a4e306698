package multicast

import (
	"math/rand/v2"
	"sync"
	"sync/atomic"

	"golang.org/x/net/ipv4"
)

// LossyConn is a fault injector over a real socket: it drops each packet
// it reads with probability Loss, as if the network had lost it. Tests
// wrap a receiver's socket in it; the packets still cross the real
// network first.
type LossyConn struct {
	PacketConn
	loss    float64
	mu      sync.Mutex
	rng     *rand.Rand
	dropped atomic.Int64
}

// NewLossyConn wraps c, dropping a fraction loss of what it reads; seed
// makes the drops repeatable.
func NewLossyConn(c PacketConn, loss float64, seed uint64) *LossyConn {
	return &LossyConn{PacketConn: c, loss: loss, rng: rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))}
}

// Dropped counts the packets dropped so far.
func (l *LossyConn) Dropped() int64 { return l.dropped.Load() }

// ReadBatch reads a batch and drops some of it, reading again when it
// dropped everything.
func (l *LossyConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	for {
		n, err := l.PacketConn.ReadBatch(ms, flags)
		if err != nil || n == 0 {
			return n, err
		}
		kept := 0
		l.mu.Lock()
		for i := range n {
			if l.rng.Float64() < l.loss {
				l.dropped.Add(1)
				continue
			}
			// Swap, never copy: each message keeps a buffer of its own.
			ms[kept], ms[i] = ms[i], ms[kept]
			kept++
		}
		l.mu.Unlock()
		if kept > 0 {
			return kept, nil
		}
	}
}
