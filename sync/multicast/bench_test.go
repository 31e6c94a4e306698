//go:build linux

package multicast

import (
	"context"
	"fmt"
	"os/exec"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/dvfs-project/dvfs/blockstore"
)

// discardStore keeps only the IDs of what it is given and counts it: a receiver's cache for benchmarks, where eight copies of a large
// template would not fit in memory.
type discardStore struct {
	n, bytes atomic.Int64
	have     sync.Map
}

func (d *discardStore) Put(_ context.Context, blocks ...blockstore.Block) error {
	for _, b := range blocks {
		d.have.Store(b.ID, struct{}{})
		d.n.Add(1)
		d.bytes.Add(int64(len(b.Frame)))
	}
	return nil
}

func (d *discardStore) Missing(_ context.Context, ids []blockstore.ID) ([]blockstore.ID, error) {
	var out []blockstore.ID
	for _, id := range ids {
		if _, ok := d.have.Load(id); !ok {
			out = append(out, id)
		}
	}
	return out, nil
}

// BenchmarkSession sends a 512 MiB template to 1, 4 and 8 receivers in
// namespaces, the sender's link shaped to 1 Gbit/s with tc tbf (egress
// of the sender's veth). It reports goodput (template bytes per second
// of wall time) and bytes sent per byte needed.
//
//	go test -run XXX -bench Session -benchtime 1x ./sync/multicast/
func BenchmarkSession(b *testing.B) {
	tp := newTemplate(b, 8192, 11)
	for _, n := range []int{1, 4, 8} {
		b.Run(fmt.Sprintf("rx=%d", n), func(b *testing.B) {
			tn := newTestNet(b, n+1)
			if out, err := exec.Command("ip", "netns", "exec", tn.nodes[0], "tc", "qdisc", "add", "dev", "eth0", "root",
				"tbf", "rate", "1gbit", "burst", "256kb", "latency", "50ms").CombinedOutput(); err != nil {
				b.Fatalf("tc: %v\n%s", err, out)
			}
			for b.Loop() {
				res := runBench(b, tn, tp, n)
				b.ReportMetric(float64(res.sender.NeededBytes)/res.wall.Seconds()/(1<<20), "MiB/s")
				b.ReportMetric(res.sender.Overhead(), "sent/needed")
				b.ReportMetric(res.wall.Seconds(), "wall-s")
			}
		})
	}
}
