package multicast

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/zeebo/blake3"
	"golang.org/x/net/ipv4"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// FrameSource gives the verified frame of a block (sync/repo.Repo).
type FrameSource interface {
	// Frame appends the frame of block id to dst.
	Frame(ctx context.Context, id blockstore.ID, dst []byte) ([]byte, error)
}

// SenderConfig configures a session's sender.
type SenderConfig struct {
	// Conn is the socket (DialGroup); receivers send control messages to
	// its address.
	Conn PacketConn
	// Group is the multicast group and port the session goes to.
	Group *net.UDPAddr
	// Source gives the blocks' frames.
	Source FrameSource
	// Manifest is the template version to send.
	Manifest *manifest.Manifest
	// Session names the session on the wire; 0 picks a random one.
	Session uint32
	// PacketSize is the largest UDP payload sent; 0 means
	// DefaultPacketSize (a 1500-byte Ethernet MTU). 8972 fits a
	// 9000-byte jumbo MTU.
	PacketSize int
	// MaxRate caps the sending rate in bytes per second on the link: UDP
	// payload plus wireOverhead bytes of UDP, IP and Ethernet headers per
	// packet, so a link shaped to MaxRate never queues or drops; 0 means
	// DefaultMaxRate.
	MaxRate int64
	// Parity is the fraction of extra parity shards sent with every block
	// before anyone asks (forward error correction); 0 sends parity only
	// on request.
	Parity float64
	// JoinWindow is how long the session is announced before data goes
	// out, so receivers join together; 0 means DefaultJoinWindow.
	JoinWindow time.Duration
	// MinReceivers, when set, ends the join window early: data goes out
	// as soon as this many receivers have joined (told the sender which
	// blocks they lack, or that they lack none), or when JoinWindow
	// ends, whichever comes first. A session to a known group of
	// workstations then starts when the last of them is in, as uftp's
	// closed group (-H) and udp-sender's --min-receivers do; one whose
	// group falls short still waits only JoinWindow. 0: always the whole
	// window.
	MinReceivers int
	// ReceiverTimeout forgets a receiver silent this long; 0 means
	// DefaultReceiverTimeout.
	ReceiverTimeout time.Duration
	// StallTimeout gives up on a receiver that makes no progress this
	// long while the sender has nothing queued: the session ends without
	// it and it fetches the rest by unicast. 0 means DefaultStallTimeout.
	StallTimeout time.Duration
	// MaxDuration ends the session after this long whatever the state;
	// receivers not done fetch the rest by unicast. 0: no limit.
	MaxDuration time.Duration
	// Linger keeps the session announced this long after its receivers
	// are done, so a workstation that found the session just before it
	// ended still joins and is served the blocks it lacks; 0: the
	// session ends as soon as its receivers are done.
	Linger time.Duration
	// Key, when set, encrypts payloads with AES-GCM (16, 24 or 32 bytes).
	Key []byte
	// Logger receives the session's log.
	Logger *slog.Logger
}

// Defaults.
const (
	DefaultPacketSize      = 1472
	JumboPacketSize        = 8972
	DefaultMaxRate         = 125_000_000 // 1 Gbit/s
	DefaultJoinWindow      = time.Second
	DefaultReceiverTimeout = 3 * time.Second
	DefaultStallTimeout    = time.Second
	DefaultLeaveLoss       = 0.5
	DefaultLeaveAfter      = 10 * time.Second
	announceEvery          = 100 * time.Millisecond
	// reportEvery is how often a receiver reports its progress and loss.
	reportEvery = 100 * time.Millisecond
	// wireOverhead is what a packet costs on an Ethernet link beyond its
	// UDP payload: UDP (8), IPv4 (20) and Ethernet (14) headers, as a
	// qdisc such as tbf counts them. Pacing payload bytes alone sent 3%
	// over a link shaped to MaxRate with 1472-byte packets: the shaper
	// dropped what it could not queue and the session paid in repairs.
	wireOverhead = 8 + 20 + 14
	batchLen     = 64
)

// SenderStats counts what a session sent.
type SenderStats struct {
	// Bytes counts every UDP payload byte sent; Packets the packets.
	Bytes, Packets int64
	// Sends counts the messages handed to the kernel: fewer than Packets
	// when runs of packets went as one (segmentation offload).
	Sends int64
	// FreshBytes and RepairBytes split the data packets' bytes into
	// whole-block sends and repairs.
	FreshBytes, RepairBytes int64
	// CatchUpBytes is the part of FreshBytes that sent a block again,
	// whole, for a receiver that asked for it after it had gone by: a
	// late joiner's catch-up.
	CatchUpBytes int64
	// Missed counts, over the receivers, the blocks a receiver asked for
	// that had already been sent when it asked: what late joiners
	// missed. Catch-up sweeps send each such block once for every late
	// joiner lacking it at the time.
	Missed int
	// NeededBytes sums the frames of the blocks some receiver lacked:
	// what a perfect session would send once.
	NeededBytes int64
	// Blocks counts the distinct blocks sent.
	Blocks int
	// Receivers counts the receivers that joined; Done those that
	// finished; Left those that left for unicast or went silent; Late
	// those that joined after data had gone out.
	Receivers, Done, Left, Late int
	// Dropped counts control packets that were malformed or foreign.
	Dropped int64
	// Waited is how long the session was announced before data went
	// out: JoinWindow, or less when MinReceivers joined sooner.
	Waited time.Duration
	// Drained is when (since the start) the sender last finished sending
	// data: what comes after it is the session's tail, waiting for the
	// receivers' last reports.
	Drained time.Duration
	// Behind is the sending time lost for good: how far the sender fell
	// behind its pacing past what it may catch up on (paceSlack), when
	// it was not scheduled or a send or a read of the source took long.
	Behind time.Duration
	// Stalls counts the times the sender fell behind past the slack, and
	// WorstStall is the longest of them: a few long stalls point at the
	// source or a descheduled sender, many short ones at a busy machine.
	Stalls     int
	WorstStall time.Duration
	// ReadWaits counts the fresh blocks that were not read ahead in time
	// and were read while the sending waited, ReadWait how long those
	// reads took together.
	ReadWaits int
	ReadWait  time.Duration
	// Slowdowns counts the times rate control cut the rate; MinRate is
	// the lowest it set (0: never cut).
	Slowdowns int
	MinRate   int64
	// Rate is the rate at the end, bytes per second.
	Rate int64
	// Duration is the session's length.
	Duration time.Duration
}

// Overhead is Bytes / NeededBytes: 1 is the floor, repairs and headers
// add to it.
func (s SenderStats) Overhead() float64 {
	if s.NeededBytes == 0 {
		return 0
	}
	return float64(s.Bytes) / float64(s.NeededBytes)
}

// Sender runs one session.
type Sender struct {
	cfg       SenderConfig
	log       *slog.Logger
	ids       []blockstore.ID
	digest    [32]byte
	session   uint32
	shardSize int
	seal      *sealer

	mu         sync.Mutex
	fresh      []bool // blocks some receiver needs and this sweep or the next sends whole
	freshCount int
	sweep      uint16
	cursor     uint32 // the block the sweep is at (len(ids): none)
	pos        uint32 // where the sweep looks next
	repairQ    []uint32
	repairWant []uint8 // shards asked for by NACKs (0: not queued)
	nextShard  []uint8 // where the repair rotation of a block stands
	frameLen   []uint32
	ahead      map[uint32][]byte // frames read ahead of the sweep (readahead.go)
	peers      map[uint32]*peer
	joined     int // peers that told what they lack (or that they are done)
	lastAdjust time.Time
	groupLoss  uint8     // percent: the median adjustRate last followed
	idleSince  time.Time // when the queues last ran dry (zero: busy)
	wake       chan struct{}
	stats      SenderStats

	rate atomic.Int64
	seq  uint32 // owned by the sending goroutine
}

// peer is what the sender knows of a receiver.
type peer struct {
	addr     net.Addr
	lastSeen time.Time
	loss     float64
	done     bool
	left     bool
	joined   bool      // it sent a need, or reported done
	remain   uint32    // blocks it still lacks, by its last report
	progress time.Time // when remain last fell (or it joined)
	behind   time.Time // when it last said its store holds it up (loss 1.0)
	// quiet counts its reports in a row that showed no progress and did
	// not say its store holds it up: a stall is what the receiver says
	// over its own running time, not what the sender's clock saw while
	// the receiver (or its whole host) was not running. NACKs do not
	// count as progress: a receiver that asks again and again and never
	// gets its blocks (a path that loses them all) is stalled too.
	quiet int
	acks  map[uint32]needAck // by base block: repeated needs are answered alike
}

// NewSender checks cfg and prepares a session.
func NewSender(cfg SenderConfig) (*Sender, error) {
	if cfg.Conn == nil || cfg.Group == nil || cfg.Source == nil || cfg.Manifest == nil {
		return nil, errors.New("multicast: sender needs a conn, group, source and manifest")
	}
	if cfg.PacketSize == 0 {
		cfg.PacketSize = DefaultPacketSize
	}
	if cfg.PacketSize < MinPacketSize || cfg.PacketSize > MaxPacketSize {
		return nil, fmt.Errorf("multicast: packet size %d outside [%d, %d]", cfg.PacketSize, MinPacketSize, MaxPacketSize)
	}
	if cfg.MaxRate <= 0 {
		cfg.MaxRate = DefaultMaxRate
	}
	if cfg.JoinWindow == 0 {
		cfg.JoinWindow = DefaultJoinWindow
	}
	if cfg.ReceiverTimeout == 0 {
		cfg.ReceiverTimeout = DefaultReceiverTimeout
	}
	if cfg.StallTimeout == 0 {
		cfg.StallTimeout = DefaultStallTimeout
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sender{cfg: cfg, log: cfg.Logger, session: cfg.Session, peers: make(map[uint32]*peer), wake: make(chan struct{}, 1)}
	var err error
	if s.seal, err = newSealer(cfg.Key); err != nil {
		return nil, err
	}
	if s.session == 0 {
		s.session = randomID()
	}
	s.shardSize = cfg.PacketSize - dataLen
	if s.seal != nil {
		s.shardSize -= tagLen
	}
	if bs := int(cfg.Manifest.BlockSize); bs+16 > MaxDataShards*s.shardSize {
		return nil, fmt.Errorf("multicast: blocks of %d bytes need more than %d shards of %d bytes: use a larger packet size", bs, MaxDataShards, s.shardSize)
	}
	s.ids = slices.Collect(cfg.Manifest.BlockIDs())
	s.digest = listDigest(s.ids)
	n := len(s.ids)
	s.fresh = make([]bool, n)
	s.repairWant = make([]uint8, n)
	s.nextShard = make([]uint8, n)
	s.frameLen = make([]uint32, n)
	s.cursor, s.pos = uint32(n), uint32(n)
	s.rate.Store(cfg.MaxRate)
	return s, nil
}

// Session returns the session's ID.
func (s *Sender) Session() uint32 { return s.session }

// Stats returns the counters so far.
func (s *Sender) Stats() SenderStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.Rate = s.rate.Load()
	return st
}

// listDigest names a block list: receivers join only a session whose
// digest is that of the manifest they verified.
func listDigest(ids []blockstore.ID) [32]byte {
	h := blake3.New()
	for i := range ids {
		_, _ = h.Write(ids[i][:])
	}
	var d [32]byte
	h.Sum(d[:0])
	return d
}

// Run announces the session, sends what receivers lack, repairs what
// they lost, and returns when every receiver is done or gone (or ctx
// ends, or MaxDuration passes).
func (s *Sender) Run(ctx context.Context) (SenderStats, error) {
	type result struct {
		st  SenderStats
		err error
	}
	done := make(chan result, 1)
	go func() {
		// The sending loop paces packets a fraction of a millisecond
		// apart, and on a busy machine every wait for a core past the
		// pacer's slack is link time lost for good (SenderStats.Stalls).
		// On a thread of its own at a higher priority, where the process
		// may raise it, it waits less. The thread is never unlocked: it
		// ends with this goroutine, priority and all.
		runtime.LockOSThread()
		if err := raiseThreadPriority(); err != nil {
			s.log.Debug("multicast: sending at the process's priority", "err", err)
		}
		st, err := s.run(ctx)
		done <- result{st, err}
	}()
	r := <-done
	return r.st, r.err
}

// senderNice is the sending thread's nice value. Raising it takes root or
// CAP_SYS_NICE (a systemd unit's AmbientCapabilities or LimitNICE=-10);
// without, the thread sends at the process's priority.
const senderNice = -10

func (s *Sender) run(ctx context.Context) (SenderStats, error) {
	start := time.Now()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	tx := newTxState(s)
	tx.start = start
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); s.control(ctx) }()
	go func() { defer wg.Done(); tx.ra.run(ctx) }()
	defer func() { cancel(); wg.Wait() }()
	var nextAnnounce, lingerFrom time.Time
	sending := false
	for {
		if err := ctx.Err(); err != nil {
			return s.Stats(), err
		}
		now := time.Now()
		if !now.Before(nextAnnounce) {
			if err := tx.announce(false); err != nil {
				return s.Stats(), err
			}
			nextAnnounce = now.Add(announceEvery)
		}
		if s.cfg.MaxDuration > 0 && now.Sub(start) > s.cfg.MaxDuration {
			s.log.Warn("multicast session reached its time limit", "session", s.session)
			break
		}
		if !sending {
			if now.Sub(start) < s.cfg.JoinWindow && !s.groupIn() {
				s.idle(ctx, min(nextAnnounce.Sub(now), 10*time.Millisecond))
				continue
			}
			sending = true
			s.mu.Lock()
			s.stats.Waited = now.Sub(start)
			joined := s.joined
			s.mu.Unlock()
			s.log.Debug("multicast: join window over; sending", "session", s.session, "joined", joined, "waited", now.Sub(start))
		}
		blk, shards, fresh, ok := s.next()
		if !ok {
			tx.pace.next = time.Time{} // idle, not behind
			if !s.finished(now, start) {
				lingerFrom = time.Time{}
			} else if s.cfg.Linger <= 0 {
				break
			} else if lingerFrom.IsZero() {
				lingerFrom = now
				s.log.Debug("multicast: receivers done; lingering for late joiners", "session", s.session, "for", s.cfg.Linger)
			} else if now.Sub(lingerFrom) >= s.cfg.Linger {
				break
			}
			s.idle(ctx, min(nextAnnounce.Sub(now), 20*time.Millisecond))
			continue
		}
		lingerFrom = time.Time{}
		if err := tx.sendBlock(ctx, blk, shards, fresh); err != nil {
			return s.Stats(), err
		}
	}
	for range 3 {
		if err := tx.announce(true); err != nil {
			return s.Stats(), err
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	for _, p := range s.peers {
		if !p.done && !p.left {
			s.stats.Left++
		}
	}
	s.stats.Duration = time.Since(start)
	s.mu.Unlock()
	st := s.Stats()
	s.log.Info("multicast session done", "session", s.session, "receivers", st.Receivers, "done", st.Done,
		"left", st.Left, "late", st.Late, "catch_up", st.CatchUpBytes, "sent", st.Bytes, "needed", st.NeededBytes, "overhead", st.Overhead(), "took", st.Duration)
	return st, nil
}

// idle waits for control traffic or d.
func (s *Sender) idle(ctx context.Context, d time.Duration) {
	if d <= 0 {
		return
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-s.wake:
	case <-t.C:
	}
}

// next picks the next block to send: queued repairs first, then the
// sweep's next fresh block. shards is how many to send (0 for a fresh
// block: all data shards and the proactive parity).
func (s *Sender) next() (blk uint32, shards uint8, fresh, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.repairQ) > 0 {
		blk = s.repairQ[0]
		s.repairQ = s.repairQ[1:]
		if n := s.repairWant[blk]; n > 0 {
			s.repairWant[blk] = 0
			return blk, n, false, true
		}
	}
	if len(s.repairQ) == 0 {
		s.repairQ = s.repairQ[:0:0] // let the array go
	}
	n := uint32(len(s.ids))
	for range 2 {
		for ; s.pos < n; s.pos++ {
			if s.fresh[s.pos] {
				blk = s.pos
				s.fresh[blk] = false
				s.freshCount--
				s.cursor = blk
				s.pos++
				return blk, 0, true, true
			}
		}
		s.cursor = n
		if s.freshCount == 0 {
			return 0, 0, false, false
		}
		s.sweep++
		s.pos, s.cursor = 0, 0
	}
	return 0, 0, false, false
}

// groupIn reports whether MinReceivers receivers have joined.
func (s *Sender) groupIn() bool {
	if s.cfg.MinReceivers <= 0 {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.joined >= s.cfg.MinReceivers
}

// markJoined counts p as joined. Called with s.mu held.
func (s *Sender) markJoined(p *peer) {
	if !p.joined {
		p.joined = true
		s.joined++
	}
}

// finished reports whether the session can end: nothing queued, the join
// window over, and every receiver done, gone or silent.
func (s *Sender) finished(now, start time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.freshCount > 0 || len(s.repairQ) > 0 {
		s.idleSince = time.Time{}
		return false
	}
	if s.idleSince.IsZero() {
		s.idleSince = now
	}
	for id, p := range s.peers {
		if p.done || p.left {
			continue
		}
		// A receiver whose store holds it up says so (loss 1.0) and is
		// waited for: it asks for what it missed once its store is back,
		// and leaves by itself if it stays far behind (leaveAfter).
		last := p.progress
		if p.behind.After(last) {
			last = p.behind
		}
		stalled := now.Sub(last) > s.cfg.StallTimeout && now.Sub(s.idleSince) > s.cfg.StallTimeout &&
			p.quiet >= stallReports(s.cfg.StallTimeout)
		if now.Sub(p.lastSeen) < s.cfg.ReceiverTimeout && !stalled {
			return false
		}
		s.log.Warn("multicast: going on without a receiver; it fetches the rest by unicast", "receiver", id,
			"remaining", p.remain, "silent", now.Sub(p.lastSeen), "stalled", stalled)
		p.left = true
		s.stats.Left++
	}
	return true
}

// stallReports is how many quiet reports in a row a receiver sends in d
// of its own running time: the evidence a stall needs.
func stallReports(d time.Duration) int {
	return max(1, int(d/reportEvery))
}

// repairDelay estimates how long the queued repairs take to go out.
func (s *Sender) repairDelay() uint16 {
	s.mu.Lock()
	q := len(s.repairQ)
	s.mu.Unlock()
	ms := float64(q) * float64(s.cfg.Manifest.BlockSize) / float64(s.rate.Load()) * 1000
	return uint16(min(ms, math.MaxUint16))
}

// txState is the sending goroutine's buffers: nothing on the hot path
// allocates.
type txState struct {
	s         *Sender
	frame     []byte
	last      []byte   // the last data shard, padded for the encoder
	parity    [][]byte // parity shards
	shards    [][]byte // the code's view: data then parity
	hdrs      [batchLen][dataLen]byte
	iov       [2 * batchLen][]byte // packet i: header iov[2i], payload iov[2i+1]
	seals     [batchLen][]byte
	n         int // packets queued
	msgs      []ipv4.Message
	first     []int // the first packet of each of msgs
	gso       bool  // send runs of packets as one (offload.go)
	gsoCtl    map[int][]byte
	ctl       []byte
	pace      pacer
	start     time.Time // of the session
	ra        *readAhead
	readWaits int           // fresh blocks read while the sending waited
	readWait  time.Duration // and how long those reads took
}

func newTxState(s *Sender) *txState {
	t := &txState{s: s, msgs: make([]ipv4.Message, 0, batchLen), first: make([]int, 0, batchLen),
		shards: make([][]byte, MaxShards), gso: gsoOffered, gsoCtl: make(map[int][]byte)}
	t.last = make([]byte, s.shardSize)
	t.parity = make([][]byte, MaxShards-1)
	if s.seal != nil {
		for i := range t.seals {
			t.seals[i] = make([]byte, 0, s.shardSize+tagLen)
		}
	}
	t.pace.rate = &s.rate
	t.ra = newReadAhead(s)
	return t
}

// announce multicasts the session's description.
func (t *txState) announce(ended bool) error {
	s := t.s
	s.mu.Lock()
	a := announce{
		header:    header{Type: typeAnnounce, Session: s.session, Seq: s.seq},
		Blocks:    uint32(len(s.ids)),
		Digest:    s.digest,
		ShardSize: uint16(s.shardSize),
		Sweep:     s.sweep,
		Cursor:    s.cursor,
		GroupLoss: s.groupLoss,
		Version:   s.cfg.Manifest.Version,
		Name:      s.cfg.Manifest.Name,
	}
	s.mu.Unlock()
	a.RepairDelay = s.repairDelay()
	if len(a.Name) > maxNameLen {
		a.Name = a.Name[:maxNameLen]
	}
	if s.seal != nil {
		a.Flags |= flagEncrypted
	}
	if ended {
		a.Flags |= flagEnded
	}
	s.seq++
	t.ctl = a.append(t.ctl[:0])
	return t.writeOne(t.ctl, s.cfg.Group)
}

func (t *txState) writeOne(b []byte, to net.Addr) error {
	m := []ipv4.Message{{Buffers: [][]byte{b}, Addr: to}}
	if _, err := t.s.cfg.Conn.WriteBatch(m, 0); err != nil {
		return fmt.Errorf("multicast: send: %w", err)
	}
	t.s.mu.Lock()
	t.s.stats.Bytes += int64(len(b))
	t.s.stats.Packets++
	t.s.stats.Sends++
	t.s.mu.Unlock()
	return nil
}

// sendBlock sends a block's shards: all data shards and the proactive
// parity when fresh, else the next shards of its repair rotation.
func (t *txState) sendBlock(ctx context.Context, blk uint32, want uint8, fresh bool) error {
	s := t.s
	var err error
	if f, ok := t.ra.take(blk); ok {
		t.ra.recycle(t.frame)
		t.frame = f
	} else {
		began := time.Now()
		if t.frame, err = s.cfg.Source.Frame(ctx, s.ids[blk], t.frame[:0]); err != nil {
			return fmt.Errorf("multicast: block %d (%s): %w", blk, s.ids[blk].Short(), err)
		}
		if fresh {
			t.readWaits++
			t.readWait += time.Since(began)
		}
	}
	fl := len(t.frame)
	k, m, ok := shardGeometry(fl, s.shardSize)
	if !ok {
		return fmt.Errorf("multicast: block %s: frame of %d bytes needs too many shards", s.ids[blk].Short(), fl)
	}
	s.mu.Lock()
	again := s.frameLen[blk] != 0
	if !again {
		s.frameLen[blk] = uint32(fl)
		s.stats.NeededBytes += int64(fl)
		s.stats.Blocks++
	}
	sweep, cursor := s.sweep, s.cursor
	first := int(s.nextShard[blk])
	count := int(want)
	if fresh {
		p := min(m, int(math.Ceil(s.cfg.Parity*float64(k))))
		first, count = 0, k+p
	} else if want == unknownNeed || int(want) > k {
		count = k
	}
	s.nextShard[blk] = uint8((first + count) % (k + m))
	if fresh && first+count == k {
		s.nextShard[blk] = uint8(k) // repairs start with parity
	}
	s.mu.Unlock()

	// Encode parity only when a parity shard goes out.
	needParity := false
	for i := range count {
		if (first+i)%(k+m) >= k {
			needParity = true
			break
		}
	}
	if needParity {
		if err := t.encode(k, m); err != nil {
			return err
		}
	}
	hdr := dataPacket{
		header:    header{Type: typeData, Session: s.session},
		Block:     blk,
		FrameLen:  uint32(fl),
		ShardSize: uint16(s.shardSize),
		K:         uint8(k),
		M:         uint8(m),
		Sweep:     sweep,
		Cursor:    cursor,
	}
	if s.seal != nil {
		hdr.Flags = flagEncrypted
	}
	var bytes int64
	for i := range count {
		sh := (first + i) % (k + m)
		var payload []byte
		if sh < k {
			off := sh * s.shardSize
			payload = t.frame[off : off+shardLen(fl, s.shardSize, k, sh)]
		} else {
			payload = t.parity[sh-k]
		}
		hdr.Shard = uint8(sh)
		hdr.Seq = s.seq
		s.seq++
		j := t.n
		h := hdr.appendHeader(t.hdrs[j][:0])
		if s.seal != nil {
			payload = s.seal.seal(t.seals[j][:0], payload, h, s.session, hdr.Seq)
		}
		t.iov[2*j], t.iov[2*j+1] = h, payload
		t.n++
		bytes += int64(len(h) + len(payload))
		if t.n == batchLen {
			if err := t.flush(ctx); err != nil {
				return err
			}
		}
	}
	if err := t.flush(ctx); err != nil {
		return err
	}
	s.mu.Lock()
	s.stats.Drained = time.Since(t.start)
	s.stats.Behind = t.pace.behind
	s.stats.Stalls, s.stats.WorstStall = t.pace.stalls, t.pace.worst
	s.stats.ReadWaits, s.stats.ReadWait = t.readWaits, t.readWait
	if fresh {
		s.stats.FreshBytes += bytes
		if again {
			s.stats.CatchUpBytes += bytes
		}
	} else {
		s.stats.RepairBytes += bytes
	}
	s.mu.Unlock()
	return nil
}

// encode computes the parity shards of t.frame.
func (t *txState) encode(k, m int) error {
	enc, err := coder(k, m)
	if err != nil {
		return err
	}
	ss := t.s.shardSize
	fl := len(t.frame)
	for i := range k - 1 {
		t.shards[i] = t.frame[i*ss : (i+1)*ss]
	}
	lastOff := (k - 1) * ss
	n := copy(t.last, t.frame[lastOff:fl])
	clear(t.last[n:])
	t.shards[k-1] = t.last
	for i := range m {
		if t.parity[i] == nil {
			t.parity[i] = make([]byte, ss)
		}
		t.shards[k+i] = t.parity[i]
	}
	return enc.Encode(t.shards[:k+m])
}

// flush paces and writes the batch.
func (t *txState) flush(ctx context.Context) error {
	if t.n == 0 {
		return nil
	}
	var bytes int
	for i := range t.n {
		bytes += t.packetLen(i)
	}
	t.pace.wait(ctx, bytes+t.n*wireOverhead)
	t.pack(0)
	sent := 0
	for sent < len(t.msgs) {
		n, err := t.s.cfg.Conn.WriteBatch(t.msgs[sent:], 0)
		sent += n
		if err != nil {
			if errors.Is(err, syscall.ENOBUFS) {
				time.Sleep(time.Millisecond)
				continue
			}
			if t.gso && gsoUnsupported(err) && sent < len(t.msgs) && len(t.msgs[sent].OOB) > 0 {
				t.s.log.Info("multicast: the kernel takes no segmented sends here; sending packet by packet", "err", err)
				t.gso = false
				t.pack(t.first[sent])
				sent = 0
				continue
			}
			return fmt.Errorf("multicast: send: %w", err)
		}
	}
	t.s.mu.Lock()
	t.s.stats.Bytes += int64(bytes)
	t.s.stats.Packets += int64(t.n)
	t.s.stats.Sends += int64(len(t.msgs))
	t.s.mu.Unlock()
	t.n = 0
	return nil
}

func (t *txState) packetLen(i int) int { return len(t.iov[2*i]) + len(t.iov[2*i+1]) }

// pack turns the queued packets from the from'th on into t.msgs: with
// segmentation offload, each run of packets of one size (and at most one
// shorter packet ending it) becomes one message, its packets' header and
// payload buffers back to back; without it, one message a packet.
func (t *txState) pack(from int) {
	t.msgs, t.first = t.msgs[:0], t.first[:0]
	for i := from; i < t.n; {
		size := t.packetLen(i)
		j, total := i+1, size
		for t.gso && j < t.n && j-i < gsoMaxSegments {
			l := t.packetLen(j)
			if l > size || total+l > gsoMaxBytes {
				break
			}
			total += l
			j++
			if l < size {
				break // only the last segment of a run may be short
			}
		}
		m := ipv4.Message{Buffers: t.iov[2*i : 2*j], Addr: t.s.cfg.Group}
		if j-i > 1 {
			ctl := t.gsoCtl[size]
			if ctl == nil {
				ctl = gsoControl(size)
				t.gsoCtl[size] = ctl
			}
			m.OOB = ctl
		}
		t.msgs = append(t.msgs, m)
		t.first = append(t.first, i)
		i = j
	}
}

// pacer spaces writes to the current rate. A sender that fell behind
// (a sleep that overslept, a descheduled thread) catches up on at most
// paceSlack of sending at full speed: with 2 ms, sleeps that rounded up to
// the next millisecond or more on a busy machine lost the time for good
// and a session to one receiver ran at 0.55 of the rate.
type pacer struct {
	rate   *atomic.Int64
	next   time.Time
	behind time.Duration // lost past the slack
	stalls int           // times it fell behind past the slack
	worst  time.Duration // the longest of them
}

// paceSlack bounds the catching up: 10 ms at 1 Gbit/s is 1.25 MB, well
// within what a shaper (tbf's latency 50ms) or a switch port queues.
const paceSlack = 10 * time.Millisecond

func (p *pacer) wait(ctx context.Context, bytes int) {
	now := time.Now()
	if floor := now.Add(-paceSlack); p.next.Before(floor) {
		if !p.next.IsZero() {
			lost := floor.Sub(p.next)
			p.behind += lost
			p.stalls++
			p.worst = max(p.worst, lost)
		}
		p.next = floor
	}
	p.next = p.next.Add(time.Duration(float64(bytes) / float64(p.rate.Load()) * float64(time.Second)))
	if d := p.next.Sub(now); d > 0 {
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
	}
}

// control reads receivers' needs and reports until ctx ends.
func (s *Sender) control(ctx context.Context) {
	msgs := make([]ipv4.Message, 16)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, MaxPacketSize)}
	}
	var (
		nd  need
		rp  report
		out []byte
	)
	for ctx.Err() == nil {
		_ = s.cfg.Conn.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		n, err := s.cfg.Conn.ReadBatch(msgs, 0)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				continue
			}
			if ctx.Err() != nil {
				return
			}
			s.log.Warn("multicast: control read", "err", err)
			time.Sleep(10 * time.Millisecond)
			continue
		}
		for i := range n {
			b := msgs[i].Buffers[0][:msgs[i].N]
			h, err := parseHeader(b)
			if err != nil || h.Session != s.session {
				s.dropped()
				continue
			}
			switch h.Type {
			case typeNeed:
				if parseNeed(b, &nd) != nil {
					s.dropped()
					continue
				}
				ack := s.onNeed(&nd, msgs[i].Addr)
				out = ack.append(out[:0])
				// To the group, not to the receiver's address: receivers
				// on one host share the group's port (ListenGroup), and
				// the kernel hands a unicast packet to only one of them.
				if _, err := s.cfg.Conn.WriteBatch([]ipv4.Message{{Buffers: [][]byte{out}, Addr: s.cfg.Group}}, 0); err != nil {
					s.log.Debug("multicast: ack", "err", err)
				}
			case typeReport:
				if parseReport(b, &rp) != nil {
					s.dropped()
					continue
				}
				s.onReport(&rp, msgs[i].Addr)
			default:
				s.dropped()
			}
		}
	}
}

func (s *Sender) dropped() {
	s.mu.Lock()
	s.stats.Dropped++
	s.mu.Unlock()
}

func (s *Sender) peer(id uint32, addr net.Addr, now time.Time) *peer {
	p := s.peers[id]
	if p == nil {
		p = &peer{addr: addr, acks: make(map[uint32]needAck), remain: math.MaxUint32, progress: now}
		s.peers[id] = p
		s.stats.Receivers++
		if s.sweep > 0 {
			s.stats.Late++
			s.log.Info("multicast: a receiver joined late; it catches up in the next sweep", "session", s.session,
				"receiver", id, "sweep", s.sweep, "cursor", s.cursor)
		}
	}
	p.lastSeen = now
	return p
}

// onNeed queues the blocks a receiver lacks for whole sending and returns
// the acknowledgement.
func (s *Sender) onNeed(nd *need, addr net.Addr) needAck {
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peer(nd.Receiver, addr, time.Now())
	if a, ok := p.acks[nd.Base]; ok {
		return a
	}
	s.markJoined(p)
	n := uint32(len(s.ids))
	for j, byt := range nd.Bitmap {
		for bit := range 8 {
			blk := nd.Base + uint32(j*8+bit)
			if byt&(1<<bit) == 0 || blk >= n || nd.Base > n {
				continue
			}
			if s.frameLen[blk] != 0 {
				s.stats.Missed++
			}
			if !s.fresh[blk] {
				s.fresh[blk] = true
				s.freshCount++
			}
		}
	}
	a := needAck{header: header{Type: typeNeedAck, Session: s.session}, Receiver: nd.Receiver, Base: nd.Base, Sweep: s.sweep, Cursor: s.pos}
	if s.cursor == n {
		a.Cursor = n
	}
	p.acks[nd.Base] = a
	s.poke()
	return a
}

// onReport takes a receiver's heartbeat and NACKs, and adjusts the rate.
func (s *Sender) onReport(r *report, addr net.Addr) {
	now := time.Now()
	s.mu.Lock()
	defer s.mu.Unlock()
	p := s.peer(r.Receiver, addr, now)
	p.loss = float64(r.Loss) / 1000
	if r.Loss == 1000 {
		p.behind = now
	}
	progressed := r.Remaining < p.remain
	if progressed {
		p.remain, p.progress = r.Remaining, now
	}
	if progressed || r.Loss == 1000 {
		p.quiet = 0
	} else {
		p.quiet++
	}
	if r.Flags&flagDone != 0 && !p.done {
		p.done = true
		s.stats.Done++
		s.markJoined(p) // it lacked nothing, or has it all: in the group either way
	}
	if r.Flags&flagLeaving != 0 && !p.left {
		p.left = true
		s.stats.Left++
	}
	if p.left || p.done {
		s.poke()
		return
	}
	n := uint32(len(s.ids))
	for _, e := range r.Entries {
		if e.Block >= n || e.Shards == 0 {
			continue
		}
		if s.repairWant[e.Block] == 0 {
			s.repairQ = append(s.repairQ, e.Block)
		}
		s.repairWant[e.Block] = max(s.repairWant[e.Block], e.Shards)
	}
	if len(r.Entries) > 0 {
		s.poke()
	}
	s.adjustRate(now)
}

// adjustRate backs off when the typical receiver reports loss and creeps
// back up when it does not. The lower median of the receivers heard in
// the last second decides, so one slow or lossy receiver does not hold
// back the group (it leaves for unicast instead), while a group whose
// stores all fall behind at once (a lab's disks busy for a moment) slows
// the session to what it keeps up with, however much it loses: leaving
// such receivers out of the median kept the rate up until all of them
// gave up. Called with s.mu held.
func (s *Sender) adjustRate(now time.Time) {
	if now.Sub(s.lastAdjust) < 250*time.Millisecond {
		return
	}
	s.lastAdjust = now
	var losses []float64
	for _, p := range s.peers {
		if !p.done && !p.left && now.Sub(p.lastSeen) < time.Second {
			losses = append(losses, p.loss)
		}
	}
	if len(losses) == 0 {
		s.groupLoss = 0
		return
	}
	slices.Sort(losses)
	med := losses[(len(losses)-1)/2]
	s.groupLoss = uint8(min(math.Round(med*100), 100))
	rate := s.rate.Load()
	floor := max(s.cfg.MaxRate/32, 1<<20)
	switch {
	case med > 0.05:
		rate = max(floor, rate*3/4)
		s.slowed(rate)
	case med > 0.02:
		rate = max(floor, rate*9/10)
		s.slowed(rate)
	case med < 0.01:
		rate = min(s.cfg.MaxRate, rate+s.cfg.MaxRate/16)
	}
	s.rate.Store(rate)
}

// slowed counts a cut of the rate to rate. Called with s.mu held.
func (s *Sender) slowed(rate int64) {
	s.stats.Slowdowns++
	if s.stats.MinRate == 0 || rate < s.stats.MinRate {
		s.stats.MinRate = rate
	}
}

// poke wakes the sending goroutine.
func (s *Sender) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// randomID returns a random nonzero ID, for a session or a receiver that
// was given none.
func randomID() uint32 {
	for {
		var b [4]byte
		_, _ = rand.Read(b[:])
		if id := binary.BigEndian.Uint32(b[:]); id != 0 {
			return id
		}
	}
}
