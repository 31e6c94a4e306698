package multicast

import (
	"bytes"
	"math/rand/v2"
	"testing"
)

// TestFECRepair encodes frames as the sender does (txState.encode) and
// rebuilds each from every k of its k+m shards the way a receiver lays
// them out (missing shards as empty slices of the frame buffer), for the
// frame lengths around the shard boundaries: the code a receiver uses is
// the one the sender used, and a lost last shard comes back with its
// padding cut.
func TestFECRepair(t *testing.T) {
	const ss = 1400
	r := rand.New(rand.NewPCG(3, 3))
	for _, fl := range []int{1, ss - 1, ss, ss + 1, 3*ss + 17, 47 * ss, 65536 + 16} {
		k, m, ok := shardGeometry(fl, ss)
		if !ok {
			t.Fatalf("frame of %d bytes: no shard geometry", fl)
		}
		frame := make([]byte, fl)
		for i := range frame {
			frame[i] = byte(r.Uint32())
		}
		tx := &txState{s: &Sender{shardSize: ss}, frame: frame, last: make([]byte, ss),
			shards: make([][]byte, MaxShards), parity: make([][]byte, MaxShards-1)}
		if err := tx.encode(k, m); err != nil {
			t.Fatalf("frame of %d bytes: encode %d+%d: %v", fl, k, m, err)
		}
		for try := range 4 {
			// Lose m shards: the first data shards on the first try,
			// any others after.
			lost := make(map[int]bool)
			for _, i := range r.Perm(k + m)[:m] {
				lost[i] = true
			}
			if try == 0 {
				clear(lost)
				for i := range min(m, k) {
					lost[i] = true
				}
			}
			buf := make([]byte, (k+m)*ss)
			shards := make([][]byte, k+m)
			for i := range k + m {
				if lost[i] {
					shards[i] = buf[i*ss : i*ss : (i+1)*ss]
					continue
				}
				wire := ss // what the packet carries: the last data shard unpadded
				if i < k {
					wire = shardLen(fl, ss, k, i)
				}
				copy(buf[i*ss:], tx.shards[i][:wire])
				shards[i] = buf[i*ss : (i+1)*ss]
			}
			enc, err := coder(k, m)
			if err != nil {
				t.Fatal(err)
			}
			if err := enc.ReconstructData(shards); err != nil {
				t.Fatalf("frame of %d bytes, %d+%d, lost %v: %v", fl, k, m, lost, err)
			}
			got := make([]byte, 0, k*ss)
			for i := range k {
				got = append(got, shards[i]...)
			}
			if !bytes.Equal(got[:fl], frame) {
				t.Fatalf("frame of %d bytes, %d+%d, lost %v: rebuilt frame differs", fl, k, m, lost)
			}
		}
	}
}
