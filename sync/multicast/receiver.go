package multicast

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/ipv4"

	"github.com/dvfs-project/dvfs/blockstore"
	"github.com/dvfs-project/dvfs/blockstore/diskio"
	"github.com/dvfs-project/dvfs/blockstore/manifest"
)

// BlockStore is where received blocks go: the workstation's cache store.
type BlockStore interface {
	blockstore.Putter
	blockstore.Checker
}

// absentPutter is a store that can skip its presence check for blocks the
// caller knows it lacks (badgerstore.Store.PutAbsent): the receiver asked
// Missing at the start and stores each block once.
type absentPutter interface {
	PutAbsent(ctx context.Context, blocks ...blockstore.Block) error
}

// Fetcher fetches blocks by unicast (sync/client.Client): fn gets each
// block's frame and plain bytes, verified against its ID.
type Fetcher interface {
	FetchFrames(ctx context.Context, ids []blockstore.ID, fn func(id blockstore.ID, frame, plain []byte) error) error
}

// ErrIncomplete: the session ended without delivering every block and
// there was no unicast fallback.
var ErrIncomplete = errors.New("multicast session ended with blocks missing")

// ReceiverConfig configures a receiver.
type ReceiverConfig struct {
	// Conn is the socket joined to the group (ListenGroup).
	Conn PacketConn
	// Manifest is the template version to receive, already verified
	// against the server's key (manifest.Open): every block is checked
	// against its IDs before it is stored.
	Manifest *manifest.Manifest
	// Store receives the blocks.
	Store BlockStore
	// Unicast fetches what the session did not deliver; nil makes that
	// an error wrapping ErrIncomplete.
	Unicast Fetcher
	// ID names the receiver to the sender; 0 picks a random one.
	ID uint32
	// Session, when set, is the session to join (the ID the server's
	// API lists): others are ignored, and when its announcement says it
	// has ended the receiver fetches what it lacks by unicast at once
	// instead of waiting for JoinTimeout. 0 joins the first live
	// session for the manifest.
	Session uint32
	// Key decrypts payloads when the session is encrypted.
	Key []byte
	// LeaveLoss says how far behind the group the receiver is far
	// behind: when what it gets of the session (1 - its loss, or 1 -
	// the share of time its store holds up its reading) is less than
	// 1 - LeaveLoss of what the typical receiver gets (1 - the group's
	// loss the sender announces). With a group that loses nothing, that
	// is a loss above LeaveLoss; a group whose disks are all slow is
	// not left by any of its receivers. 0 means DefaultLeaveLoss,
	// negative never leaves.
	LeaveLoss float64
	// LeaveAfter is how long the receiver stays far behind before it
	// leaves for unicast; 0 means DefaultLeaveAfter. The sender slows to
	// what the group keeps up with, so a moment of slow disks across the
	// lab passes, and only a receiver far slower than the rest stays
	// behind this long.
	LeaveAfter time.Duration
	// Timeout ends the session when the sender is silent this long; 0
	// means DefaultReceiverTimeout.
	Timeout time.Duration
	// JoinTimeout bounds the wait for the session's announcement; 0
	// waits until ctx ends.
	JoinTimeout time.Duration
	// MaxPartial bounds the blocks being assembled at once (memory: about
	// 2 x the block size each); 0 means 512.
	MaxPartial int
	// Logger receives the receiver's log.
	Logger *slog.Logger
}

// ReceiverStats counts what a receiver did.
type ReceiverStats struct {
	// Needed counts the blocks the store lacked at the start.
	Needed int
	// Multicast and Unicast count the blocks stored from each path.
	Multicast, Unicast int
	// Bytes counts the frame bytes stored from multicast.
	Bytes int64
	// Packets counts the packets read; Dropped the malformed, forged or
	// foreign ones; Duplicates the shards already held.
	Packets, Dropped, Duplicates int64
	// Reads counts the messages read from the socket during the session:
	// fewer than Packets when the kernel passed coalesced runs.
	Reads int64
	// Corrupt counts assembled blocks that failed verification.
	Corrupt int64
	// Repaired counts blocks rebuilt from parity.
	Repaired int64
	// Nacks counts the repair requests sent.
	Nacks int64
	// Late says the session had sent data before the receiver joined:
	// the sender sends the blocks that had gone by again in its next
	// sweep (or, when the session had ended, the unicast pass fetches
	// them).
	Late bool
	// Left says the receiver left the session for unicast; Reason why.
	Left   bool
	Reason string
	// Blocked is how long the receive loop waited for the writer (its
	// queue full: storing fell behind the session), while the socket
	// buffer took what arrived; Verify is the receive loop's time hashing
	// assembled blocks, Store the writer's time storing them.
	Blocked, Verify, Store time.Duration
	// Stores counts the writer's calls to the store (batches of blocks).
	Stores int64
	// Stalls counts the times the receive loop waited for the store
	// past behindEvery, telling the sender it is behind.
	Stalls int64
	// Loss is the last loss rate measured.
	Loss float64
	// Duration is how long Run took.
	Duration time.Duration
}

// Receiver receives one template version.
type Receiver struct {
	cfg    ReceiverConfig
	log    *slog.Logger
	id     uint32
	ids    []blockstore.ID
	digest [32]byte
	open   *sealer

	// progress, readable while Run runs
	needed, stored atomic.Int64
}

// NewReceiver checks cfg.
func NewReceiver(cfg ReceiverConfig) (*Receiver, error) {
	if cfg.Conn == nil || cfg.Manifest == nil || cfg.Store == nil {
		return nil, errors.New("multicast: receiver needs a conn, manifest and store")
	}
	if cfg.LeaveLoss == 0 {
		cfg.LeaveLoss = DefaultLeaveLoss
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultReceiverTimeout
	}
	if cfg.LeaveAfter == 0 {
		cfg.LeaveAfter = DefaultLeaveAfter
	}
	if cfg.MaxPartial == 0 {
		cfg.MaxPartial = 512
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	r := &Receiver{cfg: cfg, log: cfg.Logger, id: cfg.ID}
	var err error
	if r.open, err = newSealer(cfg.Key); err != nil {
		return nil, err
	}
	if r.id == 0 {
		r.id = randomID()
	}
	r.ids = slices.Collect(cfg.Manifest.BlockIDs())
	r.digest = listDigest(r.ids)
	return r, nil
}

// Progress returns how many blocks the receiver needed and how many it
// has stored so far (by either path).
func (r *Receiver) Progress() (stored, needed int64) { return r.stored.Load(), r.needed.Load() }

// Block states.
const (
	stHave     = 0 // not needed, or stored
	stWant     = 1 // needed, nothing held
	stPartial  = 2 // some shards held
	stAssembed = 3 // handed to the writer
)

// partial is a block being assembled.
type partial struct {
	frameLen  int
	k, m      int
	count     int
	have      [MaxShards]bool
	buf       []byte // (k+m) shards of shardSize
	last      time.Time
	lastShard int
}

// written is an assembled block on its way to the store.
type written struct {
	blk   uint32
	frame []byte
	buf   []byte
}

// rx is the state of one Run.
type rx struct {
	r         *Receiver
	ctx       context.Context
	st        ReceiverStats
	sender    net.Addr
	session   uint32
	shardSize int
	state     []uint8
	nackAt    []time.Time
	partials  map[uint32]*partial
	chunks    []chunk
	sweep     uint16
	cursor    uint32
	delay     time.Duration
	ended     bool
	lastHeard time.Time
	joined    time.Time
	remaining int

	// loss measurement: packets seen against the sequence span
	seqMax    uint32
	seqSeen   bool
	winGot    int64
	winStart  uint32
	lossEWMA  float64
	lossSince time.Time
	totGot    int64
	samples   []lossSample
	lossLong  float64
	groupLoss float64 // the typical receiver's, as the sender announced it
	// blocked is the share of the last 1-2 s the loop waited for its
	// store (blockedShare at the last report).
	blocked float64
	// farSince is when the receiver fell far behind the group (see
	// LeaveLoss); zero while it keeps up.
	farSince time.Time
	// behind says the receive loop waits for the store: reports say
	// loss 1.0.
	behind bool
	// blockSamples hold the time waited for the store (st.Blocked) at
	// the last reports, over the last 1-2 s: a loop that waited for more
	// than half of that is far behind, whatever its loss.
	blockSamples []blockSample

	writeCh chan written
	okCount atomic.Int64
	okBytes atomic.Int64
	corrupt atomic.Int64
	// time verifying (receive loop) and storing (writer), ns
	verifyNs, storeNs, stores atomic.Int64
	pool                      sync.Pool

	shards  [][]byte
	dp      dataPacket
	an      announce
	ack     needAck
	ctl     []byte
	ctlMsg  []ipv4.Message
	seq     uint32
	entries []nack
}

// lossSample is where the sequence and the packet count stood at a time.
type lossSample struct {
	at  time.Time
	seq uint32
	got int64
}

// chunk is one need message: the blocks of [base, base+8*len(bitmap)).
type chunk struct {
	base   uint32
	bitmap []byte
	acked  bool
	sweep  uint16
	cursor uint32
	sentAt time.Time
}

// chunkBlocks is how many blocks one need message covers.
const chunkBlocks = 8 * 1024

// Run joins the session for the manifest, stores every block the store
// lacks as it arrives (verified first), and fetches by unicast whatever
// the session did not deliver: when it leaves the session for loss or
// slowness, when the session ends, or when the sender falls silent.
func (r *Receiver) Run(ctx context.Context) (ReceiverStats, error) {
	start := time.Now()
	x := &rx{r: r, ctx: ctx, partials: make(map[uint32]*partial), shards: make([][]byte, MaxShards),
		ctlMsg: make([]ipv4.Message, 1)}
	st, err := x.run()
	st.Duration = time.Since(start)
	return st, err
}

func (x *rx) run() (ReceiverStats, error) {
	r := x.r
	if err := x.await(); err != nil {
		return x.st, err
	}
	missing, err := r.cfg.Store.Missing(x.ctx, r.ids)
	if err != nil {
		return x.st, fmt.Errorf("multicast: %w", err)
	}
	x.st.Needed = len(missing)
	x.remaining = len(missing)
	r.needed.Store(int64(len(missing)))
	x.state = make([]uint8, len(r.ids))
	x.nackAt = make([]time.Time, len(r.ids))
	j := 0
	for i, id := range r.ids {
		if j < len(missing) && missing[j] == id {
			x.state[i] = stWant
			j++
		}
	}
	x.makeChunks()
	r.log.Info("multicast: joined", "session", x.session, "template", r.cfg.Manifest.Name, "version", r.cfg.Manifest.Version,
		"blocks", len(r.ids), "missing", len(missing))

	if len(missing) > 0 && !x.ended {
		x.writeCh = make(chan written, 64)
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { defer wg.Done(); x.writer() }()
		err = x.receive()
		close(x.writeCh)
		wg.Wait()
		x.countStored()
		if err != nil && x.ctx.Err() != nil {
			return x.stats(), err
		}
	}
	x.report(true)
	return x.finish(missing)
}

func (x *rx) stats() ReceiverStats {
	x.st.Multicast = int(x.okCount.Load())
	x.st.Bytes = x.okBytes.Load()
	x.st.Corrupt = x.corrupt.Load()
	x.st.Verify = time.Duration(x.verifyNs.Load())
	x.st.Store = time.Duration(x.storeNs.Load())
	x.st.Stores = x.stores.Load()
	x.st.Loss = max(x.lossEWMA, x.lossLong)
	return x.st
}

// await reads until the announcement of a session for our manifest.
func (x *rx) await() error {
	r := x.r
	msgs := newMsgs(4)
	var deadline time.Time
	if r.cfg.JoinTimeout > 0 {
		deadline = time.Now().Add(r.cfg.JoinTimeout)
	}
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		if !deadline.IsZero() && time.Now().After(deadline) {
			return fmt.Errorf("multicast: no session for %s@%d within %v", r.cfg.Manifest.Name, r.cfg.Manifest.Version, r.cfg.JoinTimeout)
		}
		_ = r.cfg.Conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		n, err := r.cfg.Conn.ReadBatch(msgs, 0)
		if err != nil {
			if isTimeout(err) {
				continue
			}
			return fmt.Errorf("multicast: read: %w", err)
		}
		for i := range n {
			b := msgs[i].Buffers[0][:msgs[i].N]
			if parseAnnounce(b, &x.an) != nil || x.an.Digest != r.digest {
				continue
			}
			if (x.an.Flags&flagEncrypted != 0) != (r.open != nil) {
				return fmt.Errorf("multicast: session %d encrypted=%v, receiver has a key=%v", x.an.Session, x.an.Flags&flagEncrypted != 0, r.open != nil)
			}
			if r.cfg.Session != 0 && x.an.Session != r.cfg.Session || int(x.an.Blocks) != len(r.ids) {
				continue
			}
			if x.an.Flags&flagEnded != 0 {
				if r.cfg.Session == 0 {
					continue // maybe an old session's end; wait for a live one
				}
				// The session asked for is over: nothing more comes by
				// multicast, and the sender must not hear from us.
				x.session, x.ended = x.an.Session, true
				x.st.Late, x.st.Reason = true, "the session had ended when the receiver joined"
				return nil
			}
			x.session = x.an.Session
			x.sender = msgs[i].Addr
			x.shardSize = int(x.an.ShardSize)
			x.sweep, x.cursor = x.an.Sweep, x.an.Cursor
			x.lastHeard = time.Now()
			x.joined = x.lastHeard
			x.lossSince = x.lastHeard
			x.st.Late = x.an.Sweep > 0
			return nil
		}
	}
}

// newMsgs returns n read buffers, each large enough for a coalesced run
// of packets and its control message.
func newMsgs(n int) []ipv4.Message {
	ms := make([]ipv4.Message, n)
	for i := range ms {
		ms[i].Buffers = [][]byte{make([]byte, groBufferSize)}
		ms[i].OOB = make([]byte, oobSize)
	}
	return ms
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// makeChunks builds the need messages: one per 8192 blocks holding any
// block the store lacks.
func (x *rx) makeChunks() {
	n := len(x.state)
	for base := 0; base < n; base += chunkBlocks {
		end := min(n, base+chunkBlocks)
		bm := make([]byte, (end-base+7)/8)
		any := false
		for i := base; i < end; i++ {
			if x.state[i] == stWant {
				bm[(i-base)/8] |= 1 << ((i - base) % 8)
				any = true
			}
		}
		if any {
			x.chunks = append(x.chunks, chunk{base: uint32(base), bitmap: bm})
		}
	}
}

// receive runs the session until every block is stored or the receiver
// leaves.
func (x *rx) receive() error {
	r := x.r
	msgs := newMsgs(batchLen)
	var nextTick, nextReport time.Time
	for {
		if err := x.ctx.Err(); err != nil {
			return err
		}
		now := time.Now()
		if !now.Before(nextTick) {
			x.countStored()
			if x.remaining == 0 {
				return nil
			}
			x.sendNeeds(now)
			x.nack(now)
			nextTick = now.Add(20 * time.Millisecond)
		}
		if !now.Before(nextReport) {
			x.measureLoss(now)
			x.blocked = x.blockedShare(now)
			x.report(false)
			nextReport = now.Add(reportEvery)
			if r.cfg.LeaveLoss > 0 {
				blocked := x.blocked
				if !x.farBehind(blocked) {
					x.farSince = time.Time{}
				} else if x.farSince.IsZero() {
					x.farSince = now
				}
				if !x.farSince.IsZero() && now.Sub(x.farSince) >= r.cfg.LeaveAfter {
					x.leave("far behind the group for %v (loss %.0f%%, waiting for its store %.0f%% of the time; the group's loss %.0f%%, limit %.0f%% of what the group gets)",
						now.Sub(x.farSince).Round(time.Millisecond), 100*x.lossLong, 100*blocked, 100*x.groupLoss, 100*(1-r.cfg.LeaveLoss))
					return nil
				}
			}
		}
		if x.ended {
			x.st.Reason = "session ended"
			return nil
		}
		if now.Sub(x.lastHeard) > r.cfg.Timeout {
			x.leave("sender silent for %v", r.cfg.Timeout)
			return nil
		}
		_ = r.cfg.Conn.SetReadDeadline(now.Add(10 * time.Millisecond))
		n, err := r.cfg.Conn.ReadBatch(msgs, 0)
		if err != nil {
			if isTimeout(err) {
				continue
			}
			return fmt.Errorf("multicast: read: %w", err)
		}
		now = time.Now()
		x.st.Reads += int64(n)
		for i := range n {
			b, size, ok := received(&msgs[i])
			if !ok {
				x.st.Packets++
				x.st.Dropped++
				continue
			}
			for {
				k := min(size, len(b))
				x.packet(b[:k], now)
				if b = b[k:]; len(b) == 0 {
					break
				}
			}
		}
	}
}

// farBehind reports whether the receiver gets far less of the session
// than the typical receiver (LeaveLoss), given the share of the last
// 1-2 s its store held up its reading.
func (x *rx) farBehind(blocked float64) bool {
	mine := 1 - max(x.lossLong, blocked)
	group := 1 - x.groupLoss
	return mine < group*(1-x.r.cfg.LeaveLoss)
}

func (x *rx) leave(format string, args ...any) {
	x.st.Left = true
	x.st.Reason = fmt.Sprintf(format, args...)
	x.r.log.Warn("multicast: leaving the session for unicast", "session", x.session, "reason", x.st.Reason)
	x.report(false)
}

// packet handles one packet from the socket, read at now.
func (x *rx) packet(b []byte, now time.Time) {
	x.st.Packets++
	h, err := parseHeader(b)
	if err != nil || h.Session != x.session {
		x.st.Dropped++
		return
	}
	switch h.Type {
	case typeData:
		x.data(b, now)
	case typeAnnounce:
		if parseAnnounce(b, &x.an) != nil || x.an.Digest != x.r.digest {
			x.st.Dropped++
			return
		}
		x.heard(now, h.Seq, x.an.Sweep, x.an.Cursor)
		x.delay = time.Duration(x.an.RepairDelay) * time.Millisecond
		x.groupLoss = float64(x.an.GroupLoss) / 100
		if x.an.Flags&flagEnded != 0 {
			x.ended = true
		}
	case typeNeedAck:
		if parseNeedAck(b, &x.ack) != nil {
			x.st.Dropped++
			return
		}
		if x.ack.Receiver != x.r.id {
			return // another receiver's (acks go to the group)
		}
		for i := range x.chunks {
			c := &x.chunks[i]
			if c.base == x.ack.Base && !c.acked {
				c.acked, c.sweep, c.cursor = true, x.ack.Sweep, x.ack.Cursor
			}
		}
	default:
		x.st.Dropped++
	}
}

// heard notes a multicast packet from the sender: liveness, loss, and
// where its sweep stands.
func (x *rx) heard(now time.Time, seq uint32, sweep uint16, cursor uint32) {
	// now is when the batch was read; waitWriter may have moved lastHeard
	// past it while the loop waited for the store in the same batch, and
	// taking the batch's time back would count that wait as the sender's
	// silence.
	if now.After(x.lastHeard) {
		x.lastHeard = now
	}
	x.winGot++
	x.totGot++
	if !x.seqSeen {
		x.seqSeen, x.seqMax, x.winStart = true, seq, seq-1
	} else if int32(seq-x.seqMax) > 0 {
		x.seqMax = seq
	}
	if int16(sweep-x.sweep) > 0 || (sweep == x.sweep && cursor > x.cursor) {
		x.sweep, x.cursor = sweep, cursor
	}
}

type blockSample struct {
	at      time.Time
	blocked time.Duration
}

// blockedShare is the share of the last 1-2 s the receive loop spent
// waiting for its store. Waits come and go on a busy machine while the
// socket buffer carries the session; a store that holds the loop most of
// the time is one far slower than the session, as is a stall: the first
// report after it covers the stall.
func (x *rx) blockedShare(now time.Time) float64 {
	x.blockSamples = append(x.blockSamples, blockSample{now, x.st.Blocked})
	for len(x.blockSamples) > 2 && now.Sub(x.blockSamples[1].at) >= time.Second {
		x.blockSamples = x.blockSamples[1:]
	}
	old := x.blockSamples[0]
	d := now.Sub(old.at)
	if d <= 0 {
		return 0
	}
	return min(float64(x.st.Blocked-old.blocked)/float64(d), 1)
}

// measureLoss updates the loss estimate from the sequence numbers of the
// last window.
func (x *rx) measureLoss(now time.Time) {
	if !x.seqSeen {
		return
	}
	span := int64(x.seqMax - x.winStart)
	if span < 32 {
		return // too few packets to say
	}
	loss := 1 - float64(x.winGot)/float64(span)
	loss = min(max(loss, 0), 1)
	x.lossEWMA = 0.7*x.lossEWMA + 0.3*loss
	x.winStart, x.winGot = x.seqMax, 0
	// The long view decides leaving: loss over the last 1 to 2 seconds,
	// which a receiver that stalls for long stretches cannot average
	// away (the short view reports are sent only while it runs).
	x.samples = append(x.samples, lossSample{at: now, seq: x.seqMax, got: x.totGot})
	for len(x.samples) > 2 && now.Sub(x.samples[1].at) >= time.Second {
		x.samples = x.samples[1:]
	}
	if old := x.samples[0]; now.Sub(old.at) >= time.Second {
		if span := int64(x.seqMax - old.seq); span >= 256 {
			x.lossLong = min(max(1-float64(x.totGot-old.got)/float64(span), 0), 1)
		}
	}
}

// data takes one shard.
func (x *rx) data(b []byte, now time.Time) {
	d := &x.dp
	if err := parseData(b, d); err != nil {
		x.st.Dropped++
		return
	}
	if (d.Flags&flagEncrypted != 0) != (x.r.open != nil) || int(d.ShardSize) != x.shardSize || int(d.Block) >= len(x.state) {
		x.st.Dropped++
		return
	}
	if x.r.open != nil {
		p, err := x.r.open.open(d.Payload, b[:dataLen], d.Session, d.Seq)
		if err != nil {
			x.st.Dropped++ // forged or damaged
			return
		}
		d.Payload = p
	}
	x.heard(now, d.Seq, d.Sweep, d.Cursor)
	blk := d.Block
	if p := x.partials[blk]; p != nil && p.frameLen != int(d.FrameLen) {
		// Two geometries for one block: one of them is forged. Start over
		// with the newer; the hash decides in the end, and a forgery only
		// costs a repair.
		x.st.Dropped++
		x.release(p.buf)
		delete(x.partials, blk)
		x.state[blk] = stWant
	}
	switch x.state[blk] {
	case stWant:
		if len(x.partials) >= x.r.cfg.MaxPartial {
			x.evictOldest()
		}
		p := &partial{frameLen: int(d.FrameLen), k: int(d.K), m: int(d.M)}
		size := (p.k + p.m) * x.shardSize
		if bp, ok := x.pool.Get().(*[]byte); ok && cap(*bp) >= size {
			p.buf = (*bp)[:size]
		} else {
			// Placed so that a raw frame's payload is aligned: the
			// cache's O_DIRECT write takes it without a copy.
			p.buf = diskio.AlignedBufferAt(size, blockstore.RawHeaderLen(p.frameLen))
		}
		x.partials[blk] = p
		x.state[blk] = stPartial
	case stPartial:
	default:
		x.st.Duplicates++
		return
	}
	p := x.partials[blk]
	sh := int(d.Shard)
	if p.have[sh] {
		x.st.Duplicates++
		return
	}
	off := sh * x.shardSize
	n := copy(p.buf[off:off+x.shardSize], d.Payload)
	clear(p.buf[off+n : off+x.shardSize])
	p.have[sh] = true
	p.count++
	p.last = x.lastHeard
	if p.count >= p.k {
		x.assemble(blk, p)
	}
}

// assemble rebuilds a block's frame from any k shards and hands it to the
// writer, which verifies it.
func (x *rx) assemble(blk uint32, p *partial) {
	delete(x.partials, blk)
	complete := true
	for i := range p.k {
		if !p.have[i] {
			complete = false
			break
		}
	}
	if !complete {
		ss := x.shardSize
		for i := range p.k + p.m {
			if p.have[i] {
				x.shards[i] = p.buf[i*ss : (i+1)*ss]
			} else {
				x.shards[i] = p.buf[i*ss : i*ss : (i+1)*ss]
			}
		}
		enc, err := coder(p.k, p.m)
		if err == nil {
			err = enc.ReconstructData(x.shards[:p.k+p.m])
		}
		if err != nil {
			x.r.log.Debug("multicast: reconstruct", "block", blk, "err", err)
			x.corrupt.Add(1)
			x.release(p.buf)
			x.state[blk] = stWant
			return
		}
		for i := range p.k {
			if !p.have[i] && &x.shards[i][0] != &p.buf[i*ss] {
				copy(p.buf[i*ss:(i+1)*ss], x.shards[i])
			}
		}
		x.st.Repaired++
	}
	// Verify now, while the block's bytes are still in this core's
	// cache from the copies above: in the writer, behind a queue of
	// blocks, the same hash ran at 2.6 GB/s instead of 4.5 (eight
	// receivers spent 6 core-s of a 19 s session hashing).
	id := x.r.ids[blk]
	t0 := time.Now()
	err := blockstore.Verify(id, p.buf[:p.frameLen])
	x.verifyNs.Add(int64(time.Since(t0)))
	if err != nil {
		x.corrupt.Add(1)
		x.r.log.Warn("multicast: block failed verification; dropped", "block", id.Short(), "err", err)
		x.release(p.buf)
		x.state[blk] = stWant
		x.nackAt[blk] = time.Time{}
		return
	}
	x.state[blk] = stAssembed
	w := written{blk: blk, frame: p.buf[:p.frameLen], buf: p.buf}
	select {
	case x.writeCh <- w:
	default:
		x.waitWriter(w)
	}
}

// behindEvery is how often a receive loop waiting for its store tells the
// sender so.
const behindEvery = reportEvery

// waitWriter hands w to the writer, whose queue is full: storing fell
// behind the session, and the socket buffer takes what arrives until it
// overflows. Meanwhile the receiver reports loss 1.0 every behindEvery,
// so the sender hears it is alive, slows down when most of the group is
// behind, and does not give up on it; the wait counts as being far behind
// (farSince).
func (x *rx) waitWriter(w written) {
	t0 := time.Now()
	tick := time.NewTicker(behindEvery)
	defer tick.Stop()
	for {
		select {
		case x.writeCh <- w:
			x.st.Blocked += time.Since(t0)
			if x.behind {
				x.behind = false
				// The sender was not heard while the loop waited: its
				// silence is measured from now.
				x.lastHeard = time.Now()
			}
			return
		case <-tick.C:
			if !x.behind {
				x.behind = true
				x.st.Stalls++
				if x.farSince.IsZero() {
					x.farSince = t0
				}
			}
			x.sendReport(0)
		}
	}
}

func (x *rx) release(buf []byte) {
	b := buf[:0]
	x.pool.Put(&b)
}

// evictOldest drops the partial block heard from longest ago; it will be
// asked for again.
func (x *rx) evictOldest() {
	var (
		oldest uint32
		at     time.Time
		found  bool
	)
	for blk, p := range x.partials {
		if !found || p.last.Before(at) {
			oldest, at, found = blk, p.last, true
		}
	}
	if found {
		x.release(x.partials[oldest].buf)
		delete(x.partials, oldest)
		x.state[oldest] = stWant
	}
}

// writer stores the blocks the receive loop assembled and verified
// against the manifest's IDs (assemble), in batches. A block that does not
// verify never reaches it: the receive loop asks for it again.
func (x *rx) writer() {
	var batch []blockstore.Block
	var bufs [][]byte
	put := x.r.cfg.Store.Put
	if ap, ok := x.r.cfg.Store.(absentPutter); ok {
		put = ap.PutAbsent
	}
	flush := func() {
		if len(batch) == 0 {
			return
		}
		t0 := time.Now()
		err := put(x.ctx, batch...)
		x.storeNs.Add(int64(time.Since(t0)))
		x.stores.Add(1)
		if err != nil {
			x.r.log.Warn("multicast: store", "err", err)
			// The blocks stay missing; the unicast pass finds them.
		} else {
			for _, b := range batch {
				x.okBytes.Add(int64(len(b.Frame)))
			}
			x.okCount.Add(int64(len(batch)))
			x.r.stored.Add(int64(len(batch)))
		}
		for _, b := range bufs {
			x.release(b)
		}
		batch, bufs = batch[:0], bufs[:0]
	}
	hold := time.NewTimer(time.Hour)
	hold.Stop()
	defer hold.Stop()
	for {
		var w written
		select {
		case b, ok := <-x.writeCh:
			if !ok {
				flush()
				return
			}
			w = b
		case <-hold.C:
			flush()
			continue
		}
		batch = append(batch, blockstore.Block{ID: x.r.ids[w.blk], Frame: w.frame})
		bufs = append(bufs, w.buf)
		switch {
		case len(batch) >= writeBatch:
			hold.Stop()
			flush()
		case len(batch) == 1:
			hold.Reset(writeHold)
		}
	}
}

// A receiver's writer stores verified blocks writeBatch at a time, or
// what it has once the first of them waited writeHold: a block at a time
// as they came (one 64 KiB write and one index batch each) took 28,000
// writes for a 2 GiB session to one receiver, and eight receivers' worth
// of such writes kept a shared disk from the rate the session needs.
const (
	writeBatch = 32
	writeHold  = 10 * time.Millisecond
)

// countStored updates what remains from the blocks the writer stored.
func (x *rx) countStored() {
	x.remaining = x.st.Needed - int(x.okCount.Load())
}

// sendNeeds sends the need messages not yet acknowledged, every 200 ms.
func (x *rx) sendNeeds(now time.Time) {
	for i := range x.chunks {
		c := &x.chunks[i]
		if c.acked || now.Sub(c.sentAt) < 200*time.Millisecond {
			continue
		}
		c.sentAt = now
		nd := need{header: header{Type: typeNeed, Session: x.session, Seq: x.seq}, Receiver: x.r.id, Base: c.base, Bitmap: c.bitmap}
		x.seq++
		x.ctl = nd.append(x.ctl[:0])
		x.send(x.ctl)
	}
}

func (x *rx) send(b []byte) {
	x.ctlMsg[0].Buffers = [][]byte{b}
	x.ctlMsg[0].Addr = x.sender
	if _, err := x.r.cfg.Conn.WriteBatch(x.ctlMsg, 0); err != nil {
		x.r.log.Debug("multicast: control send", "err", err)
	}
}

// nack asks for the blocks the sweep has passed that are still
// incomplete, at most once per hold-off each.
func (x *rx) nack(now time.Time) {
	holdoff := 30*time.Millisecond + 2*x.delay
	x.entries = x.entries[:0]
	perPacket := (DefaultPacketSize - reportLen) / entryLen
	for ci := range x.chunks {
		c := &x.chunks[ci]
		if !c.acked {
			continue
		}
		end := min(int(c.base)+8*len(c.bitmap), len(x.state))
		for i := int(c.base); i < end; i++ {
			s := x.state[i]
			if s != stWant && s != stPartial {
				continue
			}
			blk := uint32(i)
			sweepDue := c.sweep
			if blk < c.cursor {
				sweepDue++
			}
			if !(int16(x.sweep-sweepDue) > 0 || (x.sweep == sweepDue && x.cursor > blk)) {
				continue
			}
			last := x.nackAt[i]
			want := uint8(unknownNeed)
			if p := x.partials[blk]; p != nil {
				if p.last.After(last) {
					last = p.last
				}
				want = uint8(p.k - p.count)
			}
			if now.Sub(last) < holdoff {
				continue
			}
			x.nackAt[i] = now
			x.entries = append(x.entries, nack{Block: blk, Shards: want})
			x.st.Nacks++
			if len(x.entries) == perPacket {
				x.sendReport(0)
				x.entries = x.entries[:0]
			}
		}
	}
	if len(x.entries) > 0 {
		x.sendReport(0)
		x.entries = x.entries[:0]
	}
}

// report sends a heartbeat: progress and loss, and done or leaving.
func (x *rx) report(final bool) {
	var flags uint8
	if x.st.Left {
		flags |= flagLeaving
	} else if final && x.remaining == 0 {
		flags |= flagDone
	}
	n := 1
	if flags != 0 {
		n = 3 // the last word is repeated: it may be lost
	}
	x.entries = x.entries[:0]
	for range n {
		x.sendReport(flags)
	}
}

func (x *rx) sendReport(flags uint8) {
	if x.sender == nil {
		return
	}
	// The loss reported counts the time the loop waited for its store,
	// over the same 1-2 s its own leaving weighs it: the group's loss the
	// sender announces is then measured as each receiver measures itself.
	// Reporting the packet loss alone, the group looked well again as
	// soon as a stall of every store ended, while each receiver still saw
	// the stall in its own view and counted itself far behind.
	rp := report{header: header{Type: typeReport, Session: x.session, Seq: x.seq}, Receiver: x.r.id,
		Remaining: uint32(max(x.remaining, 0)), Loss: uint16(max(x.lossEWMA, x.blocked) * 1000), Flags: flags, Entries: x.entries}
	if x.behind {
		rp.Loss = 1000
	} else {
		rp.Loss = min(rp.Loss, 999) // 1000 says the store holds it up
	}
	x.seq++
	x.ctl = rp.append(x.ctl[:0])
	x.send(x.ctl)
}

// finish fetches by unicast whatever of missing the store still lacks.
func (x *rx) finish(missing []blockstore.ID) (ReceiverStats, error) {
	r := x.r
	if len(missing) == 0 || x.remaining == 0 {
		return x.stats(), nil // every block stored (and durable: Put returned)
	}
	still, err := r.cfg.Store.Missing(x.ctx, missing)
	if err != nil {
		return x.stats(), fmt.Errorf("multicast: %w", err)
	}
	if len(still) == 0 {
		return x.stats(), nil
	}
	if r.cfg.Unicast == nil {
		return x.stats(), fmt.Errorf("%w: %d of %d blocks", ErrIncomplete, len(still), len(missing))
	}
	r.log.Info("multicast: fetching the rest by unicast", "blocks", len(still), "reason", x.st.Reason)
	var batch []blockstore.Block
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		err := r.cfg.Store.Put(x.ctx, batch...)
		r.stored.Add(int64(len(batch)))
		x.st.Unicast += len(batch)
		batch = batch[:0]
		return err
	}
	err = r.cfg.Unicast.FetchFrames(x.ctx, still, func(id blockstore.ID, frame, _ []byte) error {
		batch = append(batch, blockstore.Block{ID: id, Frame: bytes.Clone(frame)})
		if len(batch) == 32 {
			return flush()
		}
		return nil
	})
	if err == nil {
		err = flush()
	}
	if err != nil {
		return x.stats(), fmt.Errorf("multicast: unicast: %w", err)
	}
	return x.stats(), nil
}
