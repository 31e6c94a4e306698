package multicast

import (
	"fmt"
	"sync"

	"github.com/klauspost/reedsolomon"
)

// coders keeps one Reed-Solomon coder per data-shard count: m follows
// from k (shardGeometry), so k alone names a code. Coders are safe for
// concurrent use once made.
var coders struct {
	mu sync.Mutex
	by [MaxDataShards + 1]reedsolomon.Encoder
}

// coder returns the k+m Reed-Solomon code.
func coder(k, m int) (reedsolomon.Encoder, error) {
	coders.mu.Lock()
	defer coders.mu.Unlock()
	if e := coders.by[k]; e != nil {
		return e, nil
	}
	e, err := reedsolomon.New(k, m)
	if err != nil {
		return nil, fmt.Errorf("multicast: reed-solomon %d+%d: %w", k, m, err)
	}
	coders.by[k] = e
	return e, nil
}
