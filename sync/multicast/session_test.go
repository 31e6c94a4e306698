//go:build linux

package multicast

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/badgerstore"
)

// TestFourReceivers sends a template over real multicast to four
// receivers in namespaces; every cache must be byte-exact. The sender
// must send runs of packets as one (UDP_SEGMENT) and the receivers read
// them as runs (UDP_GRO).
func TestFourReceivers(t *testing.T) {
	tn := newTestNet(t, 5)
	tp := newTemplate(t, 512, 1) // 32 MiB
	res := runSession(t, tn, tp, SenderConfig{}, make([]rxSpec, 4))
	for i, st := range res.rx {
		if st.Multicast != st.Needed || st.Unicast != 0 {
			t.Errorf("receiver %d: %d of %d blocks by multicast, %d by unicast", i+1, st.Multicast, st.Needed, st.Unicast)
		}
		if st.Reads >= st.Packets {
			t.Errorf("receiver %d read %d packets in %d reads: no run arrived as one", i+1, st.Packets, st.Reads)
		}
	}
	if s := res.sender; s.Sends >= s.Packets {
		t.Errorf("the sender made %d sends for %d packets: no run went as one", s.Sends, s.Packets)
	}
	t.Logf("sent %d bytes for %d needed (overhead %.3f) in %v; %+v", res.sender.Bytes, res.sender.NeededBytes, res.sender.Overhead(), res.wall, res.sender)
}

// TestSharedHost runs two receivers on one host (one namespace), as two
// mounts on one workstation: both bind the group's port, and both must
// complete the session by multicast. Both drop 5% of what they read, so
// each must NACK, which it does only once the sender has answered its
// needs: a reply sent by unicast would reach only one of the two
// sockets. A third receiver on a host of its own checks the others do
// not disturb the group.
func TestSharedHost(t *testing.T) {
	tn := newTestNet(t, 3)
	tp := newTemplate(t, 256, 9) // 16 MiB
	res := runSession(t, tn, tp, SenderConfig{}, []rxSpec{{node: 1, loss: 0.05, stay: true}, {node: 1, loss: 0.05, stay: true}, {node: 2}})
	for i, st := range res.rx {
		if st.Left || st.Multicast != st.Needed || st.Unicast != 0 {
			t.Errorf("receiver %d: left %v (%s), %d of %d blocks by multicast, %d by unicast", i+1, st.Left, st.Reason, st.Multicast, st.Needed, st.Unicast)
		}
		if i < 2 && st.Nacks == 0 {
			t.Errorf("receiver %d lost packets but sent no NACK", i+1)
		}
	}
	if s := res.sender; s.Receivers != 3 || s.Done != 3 {
		t.Errorf("sender: %d receivers, %d done; want 3 and 3", s.Receivers, s.Done)
	}
}

// TestLoss drops 1%, 10% and 30% of the packets two of four receivers
// read (a lossy wrapper over the real socket). Every cache must come out
// byte-exact, by multicast alone; the repair overhead (bytes sent / bytes
// needed) is logged. No receiver leaves for loss: on a loaded machine
// what a lossy one dropped on top of 30% passed the 50% at which a
// receiver leaves for unicast (TestSlowReceiver tests leaving).
func TestLoss(t *testing.T) {
	tp := newTemplate(t, 512, 2) // 32 MiB
	for _, loss := range []float64{0.01, 0.10, 0.30} {
		t.Run(fmt.Sprintf("%.0f%%", loss*100), func(t *testing.T) {
			tn := newTestNet(t, 5)
			specs := []rxSpec{{stay: true}, {loss: loss, stay: true}, {stay: true}, {loss: loss, stay: true}}
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
	// What the session chose to send, without the repairs of what a
	// loaded machine dropped (logged).
	ratio := float64(res.sender.Bytes-res.sender.RepairBytes) / float64(changedBytes)
	for i, st := range res.rx {
		if st.Needed != changed {
			t.Errorf("receiver %d needed %d blocks, %d changed", i+1, st.Needed, changed)
		}
	}
	t.Logf("%d blocks, %d changed (%d bytes): sent %d bytes (%d repairs), %.3f x the changed bytes without repairs, in %v",
		n, changed, changedBytes, res.sender.Bytes, res.sender.RepairBytes, ratio, res.wall)
	if ratio > 1.1 {
		t.Errorf("sent %.3f x the changed bytes (repairs aside), more than 1.1", ratio)
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

// TestSlowReceiver pauses one of four receivers for 4 s out of every 4.3 s. It must
// be left behind (the sender gives up on a receiver that stalls) and
// finish by unicast, byte-exact, while the others
// finish by multicast at the group's pace. (With 2 s pauses, its socket
// buffer, which holds more of the session since receivers read coalesced
// runs, carried it through a pause and it finished by multicast.)
func TestSlowReceiver(t *testing.T) {
	tn := newTestNet(t, 5)
	tp := newTemplate(t, 1024, 7) // 64 MiB
	slow := func(c PacketConn) PacketConn {
		return &pausingConn{PacketConn: c, on: 300 * time.Millisecond, off: 4 * time.Second}
	}
	// 40 MiB/s makes the sweep last longer than the receiver's 1 s view of
	// its loss.
	// The three others stay whatever loss they measure: under -race on
	// two loaded cores they can drop half a sweep themselves, which is not
	// what this test is about.
	res := runSession(t, tn, tp, SenderConfig{MaxRate: 40 << 20}, []rxSpec{{stay: true}, {stay: true}, {stay: true}, {wrap: slow}})
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

// stallingDisk is a disk the receivers' stores share, as a lab's
// workstations share a moment of slow disks: each time every receivers
// together have stored every blocks more, it holds every store's writes
// for stall.
type stallingDisk struct {
	mu     sync.Mutex
	every  int
	n      int
	stall  time.Duration
	until  time.Time
	stalls int
}

func (d *stallingDisk) wait(blocks int) {
	d.mu.Lock()
	d.n += blocks
	if d.n >= d.every {
		d.n = 0
		d.until = time.Now().Add(d.stall)
		d.stalls++
	}
	until := d.until
	d.mu.Unlock()
	time.Sleep(time.Until(until))
}

// stallingStore is a receiver's cache on a stallingDisk.
type stallingStore struct {
	*cacheStore
	disk *stallingDisk
}

func (s stallingStore) Put(ctx context.Context, blocks ...blockstore.Block) error {
	s.disk.wait(len(blocks))
	return s.cacheStore.Put(ctx, blocks...)
}

// TestSlowDisks stalls every receiver's store at once, twice, for 3.5 s
// (far longer than the socket buffer holds, and longer than the
// receivers' silence timeout), with the session going on between the
// stalls: the lab's disks busy for a moment. The sender must slow down (rate control cut the rate) and the
// session go on: no receiver leaves, every block comes by multicast.
// Before, the receivers measured the stall as loss above 50% and left,
// and the sender, leaving lossy receivers out of its rate control, never
// slowed.
func TestSlowDisks(t *testing.T) {
	tn := newTestNet(t, 5)
	tp := newTemplate(t, 1024, 16) // 64 MiB
	disk := &stallingDisk{every: 1800, stall: DefaultReceiverTimeout + 500*time.Millisecond}
	specs := make([]rxSpec, 4)
	for i := range specs {
		specs[i].slowStore = func(c *cacheStore) BlockStore { return stallingStore{c, disk} }
	}
	const rate = 40 << 20
	res := runSession(t, tn, tp, SenderConfig{MaxRate: rate}, specs)
	s := res.sender
	t.Logf("%d stalls; sender: %d slowdowns, lowest rate %.1f MiB/s, repair %d bytes, overhead %.3f, %v",
		disk.stalls, s.Slowdowns, float64(s.MinRate)/(1<<20), s.RepairBytes, s.Overhead(), s.Duration.Round(time.Millisecond))
	if disk.stalls < 2 {
		t.Fatalf("the disk stalled %d times, want 2", disk.stalls)
	}
	for i, st := range res.rx {
		t.Logf("receiver %d: stalls %d, blocked %v, nacks %d, loss %.2f", i+1, st.Stalls, st.Blocked.Round(time.Millisecond), st.Nacks, st.Loss)
		if st.Left || st.Unicast != 0 || st.Multicast != st.Needed {
			t.Errorf("receiver %d left=%v (%s): %d of %d blocks by multicast, %d by unicast", i+1, st.Left, st.Reason, st.Multicast, st.Needed, st.Unicast)
		}
		if st.Stalls == 0 {
			t.Errorf("receiver %d never waited for its store", i+1)
		}
	}
	if s.Slowdowns == 0 || s.MinRate > rate/2 {
		t.Errorf("the sender cut its rate %d times, to %d at least: it did not slow down for the stalled group", s.Slowdowns, s.MinRate)
	}
}

// pausedTailConn loses the data of the last blocks of the first sweep
// and then holds its receive loop for pause, once, as a process the host
// does not run for a while: no reads, no reports, no NACKs.
type pausedTailConn struct {
	PacketConn
	from   uint32 // blocks from here on are lost in the first sweep
	last   uint32
	pause  time.Duration
	paused bool
}

func (p *pausedTailConn) ReadBatch(ms []ipv4.Message, flags int) (int, error) {
	for {
		n, err := p.PacketConn.ReadBatch(ms, flags)
		if err != nil || n == 0 || p.paused {
			return n, err
		}
		kept := 0
		for i := range n {
			b := ms[i].Buffers[0][:ms[i].N]
			if h, err := parseHeader(b); !p.paused && err == nil && h.Type == typeData && len(b) >= dataLen {
				if blk := binary.BigEndian.Uint32(b[12:]); blk >= p.from {
					if blk == p.last {
						p.paused = true
						time.Sleep(p.pause)
					}
					continue
				}
			}
			ms[kept], ms[i] = ms[i], ms[kept]
			kept++
		}
		if kept > 0 || p.paused {
			return kept, nil
		}
	}
}

// TestPausedReceiver holds one receiver's loop for 2 s right after it
// lost the last 16 blocks of the sweep: the sender, with nothing left to
// send, must wait for it (it has not been silent for the receiver
// timeout, nor said it makes no progress) and repair what it asks for
// once it runs again. Before, the sender took a second of its own clock
// without progress as a stall and ended the session: on a loaded
// machine, where a whole test process can go unscheduled that long,
// receivers then fetched their last blocks by unicast.
func TestPausedReceiver(t *testing.T) {
	tn := newTestNet(t, 3)
	tp := newTemplate(t, 256, 18)                     // 16 MiB
	n := uint32(len(slices.Collect(tp.m.BlockIDs()))) // the session's blocks: no holes
	pause := func(c PacketConn) PacketConn {
		return &pausedTailConn{PacketConn: c, from: n - 16, last: n - 1, pause: 2 * time.Second}
	}
	res := runSession(t, tn, tp, SenderConfig{}, []rxSpec{{stay: true}, {stay: true, wrap: pause}})
	for i, st := range res.rx {
		if st.Left || st.Reason != "" || st.Unicast != 0 || st.Multicast != st.Needed {
			t.Errorf("receiver %d left=%v (%s): %d of %d blocks by multicast, %d by unicast", i+1, st.Left, st.Reason, st.Multicast, st.Needed, st.Unicast)
		}
	}
	if res.rx[1].Nacks == 0 {
		t.Errorf("the paused receiver sent no NACK: it lost nothing")
	}
	if s := res.sender; s.Done != 2 || s.Left != 0 {
		t.Errorf("sender: %d done, %d left; want 2 and 0", s.Done, s.Left)
	}
}

// slowPuts is a receiver's cache far slower than the rest: its first
// slow writes take a second each (then it is fast, so the unicast pass
// after it left is quick).
type slowPuts struct {
	*cacheStore
	slow atomic.Int32
}

func (s *slowPuts) Put(ctx context.Context, blocks ...blockstore.Block) error {
	if s.slow.Add(-1) >= 0 {
		time.Sleep(time.Second)
	}
	return s.cacheStore.Put(ctx, blocks...)
}

// TestFarSlowerReceiver gives one of four receivers a store that takes a
// second per write, far slower than the others' for 14 s: it must leave
// for unicast (once it has been far behind for LeaveAfter) rather than
// hold the group, which finishes by multicast. Had it stayed, it would
// have finished by multicast once its writes were fast again.
func TestFarSlowerReceiver(t *testing.T) {
	tn := newTestNet(t, 5)
	tp := newTemplate(t, 1024, 17) // 64 MiB
	specs := make([]rxSpec, 4)
	specs[3].slowStore = func(c *cacheStore) BlockStore {
		s := &slowPuts{cacheStore: c}
		s.slow.Store(14)
		return s
	}
	res := runSession(t, tn, tp, SenderConfig{MaxRate: 40 << 20}, specs)
	for i, st := range res.rx[:3] {
		if st.Left || st.Unicast != 0 {
			t.Errorf("receiver %d left (%s), %d blocks by unicast", i+1, st.Reason, st.Unicast)
		}
	}
	s := res.rx[3]
	t.Logf("slow receiver: left=%v (%s), %d by multicast, %d by unicast, took %v; sender %v", s.Left, s.Reason, s.Multicast, s.Unicast,
		s.Duration.Round(time.Millisecond), res.sender.Duration.Round(time.Millisecond))
	if !s.Left || s.Unicast == 0 {
		t.Errorf("the far slower receiver did not leave for unicast")
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

// TestLateJoiner starts two receivers with the session and two late: one
// when the first receiver has half of the template (it loses 10% of its
// packets too), one when the first receiver is done, while the sender
// lingers. The late ones must end byte-exact, catching up on the blocks
// that had gone by in the sender's next sweep and repairs, by multicast;
// the ones on time must not wait for them.
func TestLateJoiner(t *testing.T) {
	tn := newTestNet(t, 5)
	tp := newTemplate(t, 1024, 12) // 64 MiB
	// Every receiver stays whatever loss it measures: on two cores kept
	// busy by other work the on-time ones measured 53-60% loss from
	// their own starved reads and left, which is what TestSlowReceiver is
	// about, not this test.
	specs := []rxSpec{{stay: true}, {stay: true}, {after: 0.5, loss: 0.1, stay: true}, {after: 1, stay: true}}
	res := runSession(t, tn, tp, SenderConfig{Linger: 3 * time.Second}, specs)
	s := res.sender
	for i, st := range res.rx {
		t.Logf("receiver %d: late=%v, needed %d; %d by multicast (%d rebuilt from parity, %d NACKs), %d by unicast (%s); took %v",
			i+1, st.Late, st.Needed, st.Multicast, st.Repaired, st.Nacks, st.Unicast, st.Reason, st.Duration.Round(time.Millisecond))
		switch {
		case i < 2 && (st.Late || st.Multicast != st.Needed):
			t.Errorf("receiver %d was on time but: late=%v, %d of %d by multicast", i+1, st.Late, st.Multicast, st.Needed)
		case i >= 2 && !st.Late:
			t.Errorf("receiver %d joined late but does not say so", i+1)
		case i == 2 && (st.Multicast != st.Needed || st.Left):
			t.Errorf("receiver 3 joined mid-session and got %d of %d blocks by multicast (left=%v: %s)", st.Multicast, st.Needed, st.Left, st.Reason)
		}
	}
	if s.Late != 2 || s.Missed == 0 || s.CatchUpBytes == 0 {
		t.Errorf("the sender counted %d late receivers, %d missed blocks and %d catch-up bytes; want 2 and some", s.Late, s.Missed, s.CatchUpBytes)
	}
	// What the catch-up sweeps sent against what the late joiners had
	// missed (frames of the average size): packet headers alone make it
	// 1.05; late joiners that miss the same blocks share their resends.
	missed := float64(s.Missed) * float64(s.NeededBytes) / float64(s.Blocks)
	t.Logf("sender: %d receivers, %d late, who had missed %d blocks; sent %d bytes for %d needed: overhead %.3f (catch-up %.3f, repair %.3f of needed); catch-up sent / missed %.3f; %v with a %v linger",
		s.Receivers, s.Late, s.Missed, s.Bytes, s.NeededBytes, s.Overhead(), float64(s.CatchUpBytes)/float64(s.NeededBytes),
		float64(s.RepairBytes)/float64(s.NeededBytes), float64(s.CatchUpBytes)/missed, s.Duration.Round(time.Millisecond), 3*time.Second)
}

// TestJoinEndedSession joins a session whose announcements say it has
// ended (a workstation that found it listed just before the end): the
// receiver must not wait for its join timeout, and fetches everything by
// unicast, byte-exact.
func TestJoinEndedSession(t *testing.T) {
	tn := newTestNet(t, 2)
	tp := newTemplate(t, 64, 13)
	const session = 777
	ids := slices.Collect(tp.m.BlockIDs())
	var sconn, rconn PacketConn
	for i, c := range []*PacketConn{&sconn, &rconn} {
		if err := tn.in(i, func() error {
			ifi, err := net.InterfaceByName("eth0")
			if err != nil {
				return err
			}
			if i == 0 {
				*c, err = DialGroup(&net.UDPAddr{IP: tn.addr(0)}, ifi, 1)
			} else {
				*c, err = ListenGroup(group, ifi)
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer (*c).Close()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() {
		// The ended session's last words, and a live session of another
		// ID for the same version that the receiver must not join.
		for seq := uint32(0); ctx.Err() == nil; seq++ {
			for _, a := range []announce{
				{header: header{Type: typeAnnounce, Session: session + 1, Seq: seq}, Blocks: uint32(len(ids)), Digest: listDigest(ids), ShardSize: 1440},
				{header: header{Type: typeAnnounce, Session: session, Seq: seq}, Blocks: uint32(len(ids)), Digest: listDigest(ids), ShardSize: 1440,
					Flags: flagEnded, Sweep: 3, Cursor: uint32(len(ids))},
			} {
				_, _ = sconn.WriteBatch([]ipv4.Message{{Buffers: [][]byte{a.append(nil)}, Addr: group}}, 0)
			}
			time.Sleep(20 * time.Millisecond)
		}
	}()
	store := newCacheStore()
	r, err := NewReceiver(ReceiverConfig{Conn: rconn, Manifest: tp.m, Store: store, Unicast: frames{tp.store},
		Session: session, JoinTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	st, err := r.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	checkExact(t, "receiver", tp, store)
	if !st.Late || st.Unicast != st.Needed || st.Multicast != 0 {
		t.Errorf("late=%v, %d by multicast and %d by unicast of %d needed; want late and all by unicast",
			st.Late, st.Multicast, st.Unicast, st.Needed)
	}
	t.Logf("joined an ended session: %d blocks by unicast (%s) in %v", st.Unicast, st.Reason, st.Duration.Round(time.Millisecond))
}

// TestJumboFrames runs sessions with jumbo payloads (uftp's 8,800 bytes
// and the largest a 9000-byte MTU carries whole, 8,972) on a network
// whose veths and bridge have MTU 9000, one of three receivers losing
// 10% of its packets. Every cache must come out byte-exact by multicast
// alone, and no datagram may have been fragmented.
func TestJumboFrames(t *testing.T) {
	tp := newTemplate(t, 512, 14) // 32 MiB
	for _, size := range []int{8800, JumboPacketSize} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			tn := newTestNet(t, 4)
			tn.setMTU(t, 9000)
			frags := tn.ipStat(t, 0, "FragCreates")
			res := runSession(t, tn, tp, SenderConfig{PacketSize: size}, []rxSpec{{}, {}, {loss: 0.1}})
			for i, st := range res.rx {
				if st.Multicast != st.Needed || st.Unicast != 0 {
					t.Errorf("receiver %d: %d of %d blocks by multicast, %d by unicast (%s)", i+1, st.Multicast, st.Needed, st.Unicast, st.Reason)
				}
			}
			if n := tn.ipStat(t, 0, "FragCreates") - frags; n != 0 {
				t.Errorf("the sender fragmented %d datagrams: %d-byte payloads should fit a 9000-byte MTU", n, size)
			}
			s := res.sender
			t.Logf("%d-byte packets: %d packets, %.1f per block; overhead %.3f (repair %.3f of needed; lossy receiver: %d rebuilt from parity, %d NACKs) in %v",
				size, s.Packets, float64(s.Packets)/float64(s.Blocks), s.Overhead(), float64(s.RepairBytes)/float64(s.NeededBytes),
				res.rx[2].Repaired, res.rx[2].Nacks, res.wall.Round(time.Millisecond))
		})
	}
}

// TestBadgerCache receives into the store a workstation's cache is
// (badgerstore, volatile, O_DIRECT pack writes), which stores through
// PutAbsent; one receiver already holds 64 of the blocks. Both caches
// must come out byte-exact.
func TestBadgerCache(t *testing.T) {
	tn := newTestNet(t, 3)
	tp := newTemplate(t, 256, 23) // 16 MiB
	stores := make([]*badgerstore.Store, 2)
	for i := range stores {
		s, err := badgerstore.Open(t.TempDir(), badgerstore.Config{Volatile: true, DirectWrites: true, VerifiedPuts: true})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { s.Close() })
		stores[i] = s
	}
	var have []blockstore.Block
	for id := range tp.m.BlockIDs() {
		if !id.IsHole() && len(have) < 64 {
			frame, err := tp.store.GetFrame(context.Background(), id, nil)
			if err != nil {
				t.Fatal(err)
			}
			have = append(have, blockstore.Block{ID: id, Frame: frame})
		}
	}
	if err := stores[1].Put(context.Background(), have...); err != nil {
		t.Fatal(err)
	}
	skipCheck = true
	rxStore = func(i int) BlockStore { return stores[i] }
	defer func() { skipCheck, rxStore = false, nil }()
	res := runSession(t, tn, tp, SenderConfig{}, make([]rxSpec, 2))
	for i, s := range stores {
		checkExact(t, fmt.Sprintf("receiver %d", i+1), tp, s)
		if st := res.rx[i]; st.Multicast != st.Needed {
			t.Errorf("receiver %d: %d of %d blocks by multicast", i+1, st.Multicast, st.Needed)
		}
	}
	if res.rx[1].Needed != res.rx[0].Needed-len(have) {
		t.Errorf("receiver 2 needed %d blocks, receiver 1 %d; it held %d", res.rx[1].Needed, res.rx[0].Needed, len(have))
	}
}

// TestMinReceivers ends the join window early once the expected receivers
// are in (SenderConfig.MinReceivers), over real multicast: four receivers
// of four expected start the session long before its 30 s window ends,
// and all four are on time; a session expecting two, the second joining
// 700 ms after the sender started, waits for it (and not longer than its
// window); one expecting five of four waits out the whole window.
func TestMinReceivers(t *testing.T) {
	tn := newTestNet(t, 5)
	tp := newTemplate(t, 64, 14) // 4 MiB
	check := func(name string, res sessionResult) {
		t.Helper()
		s := res.sender
		t.Logf("%s: waited %v, session %v, wall %v; %d receivers, %d late", name, s.Waited.Round(time.Millisecond),
			s.Duration.Round(time.Millisecond), res.wall.Round(time.Millisecond), s.Receivers, s.Late)
		for i, st := range res.rx {
			if st.Late || st.Multicast != st.Needed || st.Unicast != 0 {
				t.Errorf("%s: receiver %d late=%v, %d of %d blocks by multicast, %d by unicast", name, i+1, st.Late, st.Multicast, st.Needed, st.Unicast)
			}
		}
		if s.Late != 0 || s.Missed != 0 {
			t.Errorf("%s: the sender counted %d late receivers and %d missed blocks", name, s.Late, s.Missed)
		}
	}

	const long = 30 * time.Second
	res := runSession(t, tn, tp, SenderConfig{JoinWindow: long, MinReceivers: 4}, make([]rxSpec, 4))
	check("4 of 4", res)
	// The receivers start with the sender: joining takes them one
	// announcement and a need message, milliseconds (however loaded the
	// machine, far less than the window).
	if w := res.sender.Waited; w >= long {
		t.Errorf("4 of 4 expected receivers joined, but the session waited out its %v window (%v)", long, w)
	}

	const late = 700 * time.Millisecond
	res = runSession(t, tn, tp, SenderConfig{JoinWindow: long, MinReceivers: 2}, []rxSpec{{}, {late: late}})
	check("2 of 2, one late", res)
	if w := res.sender.Waited; w < late || w >= long {
		t.Errorf("the second expected receiver joined after %v, but the session waited %v (window %v)", late, w, long)
	}

	const window = 1500 * time.Millisecond
	res = runSession(t, tn, tp, SenderConfig{JoinWindow: window, MinReceivers: 5}, make([]rxSpec, 4))
	check("4 of 5", res)
	if w := res.sender.Waited; w < window {
		t.Errorf("4 of 5 expected receivers joined, but the session sent after %v, before its %v window ended", w, window)
	}
}

// slowSource is a FrameSource whose every 32nd read stalls, as a
// template read from a busy disk does.
type slowSource struct {
	frames
	stall time.Duration
	n     atomic.Int64
}

func (s *slowSource) Frame(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error) {
	if s.n.Add(1)%32 == 0 {
		time.Sleep(s.stall)
	}
	return s.frames.Frame(ctx, id, dst)
}

// TestSlowSource sends from a source whose reads stall now and then: the
// sender reads ahead of its sweep, so the stalls do not cost sending time
// (SenderStats.Behind), and every cache ends byte-exact.
func TestSlowSource(t *testing.T) {
	tn := newTestNet(t, 3)
	tp := newTemplate(t, 512, 15) // 32 MiB
	const stall = 40 * time.Millisecond
	src := &slowSource{frames: frames{tp.store}, stall: stall}
	senderSource = src
	defer func() { senderSource = nil }()
	res := runSession(t, tn, tp, SenderConfig{MaxRate: 30 << 20}, make([]rxSpec, 2))
	s := res.sender
	stalls := int(src.n.Load()) / 32
	// Read in line with the sending, each stall would lose what the
	// pacer cannot catch up on: stall - paceSlack.
	inline := time.Duration(stalls) * (stall - paceSlack)
	t.Logf("%d reads, %d stalls of %v (%v lost if read in line); %d fresh blocks read in line, taking %v; behind its pacing %v in %d stalls; session %v",
		src.n.Load(), stalls, stall, inline, s.ReadWaits, s.ReadWait, s.Behind, s.Stalls, s.Duration.Round(time.Millisecond))
	// What the sender spent reading while the sending waited is what the
	// source's stalls cost it. (Behind also counts the sender waiting
	// for a core, which under -race on a loaded machine took 100-270 ms
	// of this session with or without read-ahead's help.)
	if s.ReadWait > 2*stall {
		t.Errorf("the sender waited %v for %d reads of fresh blocks: the source's stalls (%v in line) held it up", s.ReadWait, s.ReadWaits, inline)
	}
}
