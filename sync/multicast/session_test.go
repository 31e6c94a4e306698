package multicast

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"testing"
	"time"

	"golang.org/x/net/ipv4"
)

// TestFourReceivers sends a template over real multicast to four
// receivers in namespaces; every cache must be byte-exact.
func TestFourReceivers(t *testing.T) {
	tn := newTestNet(t, 5)
	tp := newTemplate(t, 512, 1) // 32 MiB
	res := runSession(t, tn, tp, SenderConfig{}, make([]rxSpec, 4))
	for i, st := range res.rx {
		if st.Multicast != st.Needed || st.Unicast != 0 {
			t.Errorf("receiver %d: %d of %d blocks by multicast, %d by unicast", i+1, st.Multicast, st.Needed, st.Unicast)
		}
	}
	t.Logf("sent %d bytes for %d needed (overhead %.3f) in %v; %+v", res.sender.Bytes, res.sender.NeededBytes, res.sender.Overhead(), res.wall, res.sender)
}

// TestLoss drops 1%, 10% and 30% of the packets two of four receivers
// read (a lossy wrapper over the real socket). Every cache must come out
// byte-exact, by multicast alone; the repair overhead (bytes sent / bytes
// needed) is logged.
func TestLoss(t *testing.T) {
	tp := newTemplate(t, 512, 2) // 32 MiB
	for _, loss := range []float64{0.01, 0.10, 0.30} {
		t.Run(fmt.Sprintf("%.0f%%", loss*100), func(t *testing.T) {
			tn := newTestNet(t, 5)
			specs := []rxSpec{{}, {loss: loss}, {}, {loss: loss}}
			res := runSession(t, tn, tp, SenderConfig{}, specs)
			for i, st := range res.rx {
				if st.Left || st.Unicast != 0 {
					t.Errorf("receiver %d left (%s) and fetched %d blocks by unicast", i+1, st.Reason, st.Unicast)
				}
			}
			s := res.sender
			t.Logf("loss %.0f%%: overhead %.3f (sent %d, needed %d, repair %d), %v; lossy receivers: repaired %d, nacks %d, loss seen %.3f",
				loss*100, s.Overhead(), s.Bytes, s.NeededBytes, s.RepairBytes, res.wall, res.rx[1].Repaired, res.rx[1].Nacks, res.rx[1].Loss)
		})
	}
}

// TestForged injects forged and malformed packets into a live session
// from another socket: junk, foreign sessions, truncated data, and data
// shards with the session's ID and the right geometry but wrong bytes.
// Receivers must drop and count them, never cache them, and still end
// byte-exact.
func TestForged(t *testing.T) {
	tn := newTestNet(t, 4)
	tp := newTemplate(t, 256, 3)
	const session = 4242
	forger := func(ctx context.Context) {
		var c PacketConn
		if err := tn.in(0, func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			c, err = DialGroup(&net.UDPAddr{IP: tn.addr(0)}, ifi, 1)
			return err
		}); err != nil {
			t.Error(err)
			return
		}
		defer c.Close()
		rng := rand.New(rand.NewPCG(1, 2))
		ss := DefaultPacketSize - dataLen
		msgs := make([]ipv4.Message, 1)
		for ctx.Err() == nil {
			var b []byte
			switch rng.IntN(4) {
			case 0: // junk
				b = make([]byte, rng.IntN(1500))
				for i := range b {
					b[i] = byte(rng.Uint32())
				}
			case 1, 2: // a forged shard of a real block, raw frame geometry
				fl := bs + 4
				k, m, _ := shardGeometry(fl, ss)
				d := dataPacket{header: header{Type: typeData, Session: session, Seq: rng.Uint32()}, Block: uint32(rng.IntN(250)),
					FrameLen: uint32(fl), ShardSize: uint16(ss), Shard: uint8(rng.IntN(k + m)), K: uint8(k), M: uint8(m)}
				b = d.appendHeader(nil)
				n := ss
				if int(d.Shard) == k-1 {
					n = shardLen(fl, ss, k, k-1)
				}
				b = append(b, make([]byte, n)...)
				b[len(b)-1] = 0xee
			case 3: // another session, truncated
				d := dataPacket{header: header{Type: typeData, Session: session + 1}}
				b = d.appendHeader(nil)[:20]
			}
			msgs[0].Buffers, msgs[0].Addr = [][]byte{b}, group
			_, _ = c.WriteBatch(msgs, 0)
			time.Sleep(50 * time.Microsecond)
		}
	}
	res := runSession(t, tn, tp, SenderConfig{Session: session}, make([]rxSpec, 3), forger)
	var dropped, corrupt int64
	for _, st := range res.rx {
		dropped += st.Dropped
		corrupt += st.Corrupt
	}
	if dropped == 0 || corrupt == 0 {
		t.Errorf("receivers dropped %d packets and refused %d blocks; the forger should have caused both", dropped, corrupt)
	}
	t.Logf("dropped %d forged/malformed packets, refused %d corrupt blocks; overhead %.3f", dropped, corrupt, res.sender.Overhead())
}
