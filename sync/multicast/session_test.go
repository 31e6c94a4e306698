package multicast

import (
	"bytes"
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

// TestDifferentialUpdate updates a 1 GiB template (64 MiB with -short or
// -race) in which 5% of the blocks changed, to receivers that hold the
// old version: the session must send at most 1.1 times the changed bytes.
func TestDifferentialUpdate(t *testing.T) {
	n := 16384 // 1 GiB of 64 KiB blocks
	if testing.Short() || raceEnabled {
		n = 1024
	}
	tn := newTestNet(t, 5)
	tp := newTemplate(t, n, 4)
	ctx := context.Background()
	specs := make([]rxSpec, 4)
	for i := range specs {
		specs[i].store = newCacheStore()
	}
	for id := range tp.m.BlockIDs() {
		fr, err := tp.store.GetFrame(ctx, id, nil)
		if err != nil {
			t.Fatal(err)
		}
		for i := range specs {
			specs[i].store.seed(id, fr)
		}
	}
	// Version 2: 5% of the blocks, spread at random, get new contents.
	rng := rand.New(rand.NewPCG(5, 6))
	changed := 0
	cr := rand.NewChaCha8([32]byte{9})
	for _, i := range rng.Perm(n)[:n/20] {
		tp.plain[i] = make([]byte, bs)
		_, _ = cr.Read(tp.plain[i])
		changed++
	}
	tp.commit(t, 2)
	changedBytes := int64(changed) * bs
	res := runSession(t, tn, tp, SenderConfig{}, specs)
	ratio := float64(res.sender.Bytes) / float64(changedBytes)
	for i, st := range res.rx {
		if st.Needed != changed {
			t.Errorf("receiver %d needed %d blocks, %d changed", i+1, st.Needed, changed)
		}
	}
	t.Logf("%d blocks, %d changed (%d bytes): sent %d bytes, %.3f x the changed bytes, in %v", n, changed, changedBytes, res.sender.Bytes, ratio, res.wall)
	if ratio > 1.1 {
		t.Errorf("sent %.3f x the changed bytes, more than 1.1", ratio)
	}
}

// pausingConn stops reading for off out of every on+off, like a receiver
// whose machine is busy half the time.
type pausingConn struct {
	PacketConn
	on, off time.Duration
	until   time.Time
}

func (p *pausingConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	now := time.Now()
	if p.until.IsZero() {
		p.until = now.Add(p.on)
	}
	if now.After(p.until) {
		time.Sleep(p.off)
		p.until = time.Now().Add(p.on)
	}
	return p.PacketConn.ReadBatch(ms, flags)
}

// TestSlowReceiver pauses one of four receivers for 2 s out of every 2.3 s. It must
// be left behind (the sender gives up on a receiver that stalls) and
// finish by unicast, byte-exact, while the others
// finish by multicast at the group's pace.
func TestSlowReceiver(t *testing.T) {
	tn := newTestNet(t, 5)
	tp := newTemplate(t, 1024, 7) // 64 MiB
	slow := func(c PacketConn) PacketConn {
		return &pausingConn{PacketConn: c, on: 300 * time.Millisecond, off: 2 * time.Second}
	}
	// 40 MiB/s makes the sweep last longer than the receiver's 1 s view of
	// its loss.
	res := runSession(t, tn, tp, SenderConfig{MaxRate: 40 << 20}, []rxSpec{{}, {}, {}, {wrap: slow}})
	for i, st := range res.rx[:3] {
		if st.Left || st.Unicast != 0 {
			t.Errorf("receiver %d left (%s), %d blocks by unicast", i+1, st.Reason, st.Unicast)
		}
	}
	s := res.rx[3]
	t.Logf("slow receiver: left=%v (%s), %d by multicast, %d by unicast, loss %.2f, took %v; others took %v, %v, %v; sender %v, overhead %.3f",
		s.Left, s.Reason, s.Multicast, s.Unicast, s.Loss, s.Duration, res.rx[0].Duration, res.rx[1].Duration, res.rx[2].Duration, res.sender.Duration, res.sender.Overhead())
	if s.Unicast == 0 {
		t.Errorf("the slow receiver did not finish by unicast")
	}
}

// TestEncrypted runs a session with AES-GCM payloads and 10% loss on one
// of two receivers.
func TestEncrypted(t *testing.T) {
	tn := newTestNet(t, 3)
	tp := newTemplate(t, 256, 8)
	key := bytes.Repeat([]byte{7}, 32)
	res := runSession(t, tn, tp, SenderConfig{Key: key}, []rxSpec{{}, {loss: 0.1}})
	for i, st := range res.rx {
		if st.Multicast != st.Needed {
			t.Errorf("receiver %d: %d of %d by multicast", i+1, st.Multicast, st.Needed)
		}
	}
	t.Logf("encrypted: overhead %.3f in %v", res.sender.Overhead(), res.wall)
}
