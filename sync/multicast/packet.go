package multicast

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/dvfs-project/dvfs/blockstore"
)

// Wire format. Every packet starts with a 12-byte header:
//
//	0  magic 'd' 'm'
//	2  version (1)
//	3  type
//	4  session ID (uint32, big endian like every field)
//	8  sequence: the sender numbers every multicast packet of a session
//	   (receivers count gaps to measure loss); receivers number theirs
//
// then a body that depends on the type:
//
//	data     block index u32, frame length u32, shard size u16, shard u8,
//	         data shards k u8, parity shards m u8, flags u8, sweep u16,
//	         cursor u32; then the shard (the last data shard is sent
//	         without its zero padding), then a 16-byte tag when encrypted
//	announce block count u32, digest [32], shard size u16, flags u8,
//	         group loss % u8, sweep u16, cursor u32, repair delay ms u16,
//	         version u64, name length u8, name
//	need     receiver u32, base block u32, bitmap length u16, bitmap
//	needAck  receiver u32, base block u32, sweep u16, cursor u32
//	report   receiver u32, remaining u32, loss per mille u16, flags u8,
//	         reserved u8, count u16, count x (block u32, shards u8)
//
// A block's frame (blockstore framing) is cut into k data shards of the
// shard size; Reed-Solomon adds up to m parity shards, and any k of the
// k+m shards rebuild the frame. Shard indexes 0..k-1 are data, k..k+m-1
// parity. The sender walks the blocks it must send in index order, a
// sweep at a time; cursor is the index of the block a sweep is at, so a
// receiver knows which blocks have gone by.
const (
	magic0, magic1 = 'd', 'm'
	// wireVersion 2: the announce's reserved byte, which version 1
	// required to be 0, carries the group's loss.
	wireVersion = 2

	headerLen   = 12
	dataLen     = headerLen + 20
	announceLen = headerLen + 57 // without the name
	needLen     = headerLen + 10 // without the bitmap
	needAckLen  = headerLen + 14
	reportLen   = headerLen + 14 // without the entries
	entryLen    = 5
	tagLen      = 16 // AES-GCM tag
)

// Packet types.
const (
	typeData     = 1
	typeAnnounce = 2
	typeNeed     = 3
	typeNeedAck  = 4
	typeReport   = 5
)

// Flags.
const (
	flagEncrypted = 1 << 0 // data, announce: payloads are AES-GCM sealed
	flagEnded     = 1 << 1 // announce: the session is over
	flagDone      = 1 << 0 // report: the receiver holds every block
	flagLeaving   = 1 << 1 // report: the receiver leaves for unicast
)

// Limits.
const (
	// MaxShards bounds k+m: the Reed-Solomon code works over GF(2^8).
	MaxShards = 256
	// MaxDataShards bounds k, leaving at least as many parity shards as
	// data shards up to 128.
	MaxDataShards = 128
	// maxFrameLen bounds a frame a data packet may announce.
	maxFrameLen = blockstore.MaxBlockSize + 16
	// MinPacketSize and MaxPacketSize bound the UDP payload size.
	MinPacketSize = 512
	MaxPacketSize = 65000
	// maxNameLen bounds a template name in an announcement.
	maxNameLen = 255
	// unknownNeed in a report entry asks for a block the receiver has
	// nothing of: the sender sends k shards.
	unknownNeed = 255
)

// ErrMalformed: a packet that does not decode. Such packets are dropped
// and counted, never acted on.
var ErrMalformed = errors.New("malformed packet")

func malformed(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, args...))
}

// header is the start of every packet.
type header struct {
	Type    uint8
	Session uint32
	Seq     uint32
}

func (h header) append(b []byte) []byte {
	b = append(b, magic0, magic1, wireVersion, h.Type)
	b = binary.BigEndian.AppendUint32(b, h.Session)
	return binary.BigEndian.AppendUint32(b, h.Seq)
}

func parseHeader(b []byte) (header, error) {
	if len(b) < headerLen {
		return header{}, malformed("%d bytes, shorter than a header", len(b))
	}
	if b[0] != magic0 || b[1] != magic1 {
		return header{}, malformed("bad magic")
	}
	if b[2] != wireVersion {
		return header{}, malformed("version %d", b[2])
	}
	return header{Type: b[3], Session: binary.BigEndian.Uint32(b[4:]), Seq: binary.BigEndian.Uint32(b[8:])}, nil
}

// dataPacket is one shard of a block.
type dataPacket struct {
	header
	Block     uint32
	FrameLen  uint32
	ShardSize uint16
	Shard     uint8
	K, M      uint8
	Flags     uint8
	Sweep     uint16
	Cursor    uint32
	// Payload is the shard (aliases the packet; sealed when encrypted).
	Payload []byte
}

// shardGeometry returns k (data shards) and m (parity shards) for a frame
// of frameLen bytes cut into shards of shardSize, or ok=false when the
// frame needs more than MaxDataShards shards.
func shardGeometry(frameLen, shardSize int) (k, m int, ok bool) {
	if frameLen <= 0 || shardSize <= 0 {
		return 0, 0, false
	}
	k = (frameLen + shardSize - 1) / shardSize
	if k > MaxDataShards {
		return 0, 0, false
	}
	return k, min(max(k, 4), MaxShards-k), true
}

// shardLen is the length on the wire of shard i: the last data shard
// goes without its padding.
func shardLen(frameLen, shardSize, k, i int) int {
	if i == k-1 {
		return frameLen - (k-1)*shardSize
	}
	return shardSize
}

// appendHeader appends the data packet's header, without the payload.
func (d *dataPacket) appendHeader(b []byte) []byte {
	b = d.header.append(b)
	b = binary.BigEndian.AppendUint32(b, d.Block)
	b = binary.BigEndian.AppendUint32(b, d.FrameLen)
	b = binary.BigEndian.AppendUint16(b, d.ShardSize)
	b = append(b, d.Shard, d.K, d.M, d.Flags)
	b = binary.BigEndian.AppendUint16(b, d.Sweep)
	return binary.BigEndian.AppendUint32(b, d.Cursor)
}

// parseData decodes a data packet; the payload aliases b. It checks the
// geometry: k and m must be what the frame length and shard size give,
// and the payload exactly as long as the shard.
func parseData(b []byte, d *dataPacket) error {
	h, err := parseHeader(b)
	if err != nil {
		return err
	}
	if h.Type != typeData {
		return malformed("type %d is not data", h.Type)
	}
	if len(b) < dataLen {
		return malformed("data packet of %d bytes", len(b))
	}
	d.header = h
	d.Block = binary.BigEndian.Uint32(b[12:])
	d.FrameLen = binary.BigEndian.Uint32(b[16:])
	d.ShardSize = binary.BigEndian.Uint16(b[20:])
	d.Shard, d.K, d.M, d.Flags = b[22], b[23], b[24], b[25]
	d.Sweep = binary.BigEndian.Uint16(b[26:])
	d.Cursor = binary.BigEndian.Uint32(b[28:])
	d.Payload = b[dataLen:]
	if d.FrameLen == 0 || d.FrameLen > maxFrameLen {
		return malformed("frame length %d", d.FrameLen)
	}
	if d.Flags&^flagEncrypted != 0 {
		return malformed("data flags %#x", d.Flags)
	}
	k, m, ok := shardGeometry(int(d.FrameLen), int(d.ShardSize))
	if !ok || k != int(d.K) || m != int(d.M) {
		return malformed("geometry k=%d m=%d for frame %d, shard %d", d.K, d.M, d.FrameLen, d.ShardSize)
	}
	if int(d.Shard) >= k+m {
		return malformed("shard %d of %d", d.Shard, k+m)
	}
	want := int(d.ShardSize)
	if int(d.Shard) < k {
		want = shardLen(int(d.FrameLen), int(d.ShardSize), k, int(d.Shard))
	}
	if d.Flags&flagEncrypted != 0 {
		want += tagLen
	}
	if len(d.Payload) != want {
		return malformed("shard %d payload %d bytes, want %d", d.Shard, len(d.Payload), want)
	}
	return nil
}

// announce describes a session; the sender multicasts it a few times a
// second.
type announce struct {
	header
	Blocks    uint32
	Digest    [32]byte
	ShardSize uint16
	Flags     uint8
	// GroupLoss is the loss, in percent, of the typical receiver (the
	// lower median the sender's rate control follows; a receiver
	// waiting for its store counts as 100): what a receiver measures
	// itself against before it leaves the session.
	GroupLoss   uint8
	Sweep       uint16
	Cursor      uint32
	RepairDelay uint16 // ms: how long queued repairs take to go out
	Version     uint64
	Name        string
}

func (a *announce) append(b []byte) []byte {
	b = a.header.append(b)
	b = binary.BigEndian.AppendUint32(b, a.Blocks)
	b = append(b, a.Digest[:]...)
	b = binary.BigEndian.AppendUint16(b, a.ShardSize)
	b = append(b, a.Flags, a.GroupLoss)
	b = binary.BigEndian.AppendUint16(b, a.Sweep)
	b = binary.BigEndian.AppendUint32(b, a.Cursor)
	b = binary.BigEndian.AppendUint16(b, a.RepairDelay)
	b = binary.BigEndian.AppendUint64(b, a.Version)
	b = append(b, byte(len(a.Name)))
	return append(b, a.Name...)
}

func parseAnnounce(b []byte, a *announce) error {
	h, err := parseHeader(b)
	if err != nil {
		return err
	}
	if h.Type != typeAnnounce || len(b) < announceLen {
		return malformed("announce of %d bytes, type %d", len(b), h.Type)
	}
	a.header = h
	a.Blocks = binary.BigEndian.Uint32(b[12:])
	copy(a.Digest[:], b[16:48])
	a.ShardSize = binary.BigEndian.Uint16(b[48:])
	a.Flags, a.GroupLoss = b[50], b[51]
	if a.Flags&^(flagEncrypted|flagEnded) != 0 {
		return malformed("announce flags %#x", a.Flags)
	}
	if a.GroupLoss > 100 {
		return malformed("announce group loss %d%%", a.GroupLoss)
	}
	a.Sweep = binary.BigEndian.Uint16(b[52:])
	a.Cursor = binary.BigEndian.Uint32(b[54:])
	a.RepairDelay = binary.BigEndian.Uint16(b[58:])
	a.Version = binary.BigEndian.Uint64(b[60:])
	n := int(b[68])
	if len(b) != announceLen+n {
		return malformed("announce name of %d bytes in %d", n, len(b)-announceLen)
	}
	if a.ShardSize == 0 || a.Cursor > a.Blocks {
		return malformed("announce shard size %d, cursor %d of %d", a.ShardSize, a.Cursor, a.Blocks)
	}
	if string(b[announceLen:]) != a.Name { // reuse the string when unchanged
		a.Name = string(b[announceLen:])
	}
	return nil
}

// need tells the sender which blocks of [Base, Base+8*len(Bitmap)) a
// receiver lacks (bit i of byte j: block Base+8j+i).
type need struct {
	header
	Receiver uint32
	Base     uint32
	Bitmap   []byte
}

func (n *need) append(b []byte) []byte {
	b = n.header.append(b)
	b = binary.BigEndian.AppendUint32(b, n.Receiver)
	b = binary.BigEndian.AppendUint32(b, n.Base)
	b = binary.BigEndian.AppendUint16(b, uint16(len(n.Bitmap)))
	return append(b, n.Bitmap...)
}

func parseNeed(b []byte, n *need) error {
	h, err := parseHeader(b)
	if err != nil {
		return err
	}
	if h.Type != typeNeed || len(b) < needLen {
		return malformed("need of %d bytes, type %d", len(b), h.Type)
	}
	n.header = h
	n.Receiver = binary.BigEndian.Uint32(b[12:])
	n.Base = binary.BigEndian.Uint32(b[16:])
	l := int(binary.BigEndian.Uint16(b[20:]))
	if len(b) != needLen+l || n.Base%8 != 0 {
		return malformed("need bitmap of %d bytes in %d, base %d", l, len(b)-needLen, n.Base)
	}
	n.Bitmap = b[needLen:]
	return nil
}

// needAck confirms a need and says where the sender stood when it took
// it: the blocks asked for at or after Cursor go out in sweep Sweep, the
// others in the next sweep.
type needAck struct {
	header
	Receiver uint32
	Base     uint32
	Sweep    uint16
	Cursor   uint32
}

func (a *needAck) append(b []byte) []byte {
	b = a.header.append(b)
	b = binary.BigEndian.AppendUint32(b, a.Receiver)
	b = binary.BigEndian.AppendUint32(b, a.Base)
	b = binary.BigEndian.AppendUint16(b, a.Sweep)
	return binary.BigEndian.AppendUint32(b, a.Cursor)
}

func parseNeedAck(b []byte, a *needAck) error {
	h, err := parseHeader(b)
	if err != nil {
		return err
	}
	if h.Type != typeNeedAck || len(b) != needAckLen {
		return malformed("need ack of %d bytes, type %d", len(b), h.Type)
	}
	a.header = h
	a.Receiver = binary.BigEndian.Uint32(b[12:])
	a.Base = binary.BigEndian.Uint32(b[16:])
	a.Sweep = binary.BigEndian.Uint16(b[20:])
	a.Cursor = binary.BigEndian.Uint32(b[22:])
	return nil
}

// report is a receiver's heartbeat: how far it is, the loss it sees, and
// NACKs (blocks it needs more shards of).
type report struct {
	header
	Receiver  uint32
	Remaining uint32
	Loss      uint16 // per mille
	Flags     uint8
	Entries   []nack
}

// nack asks for Shards more shards of Block (unknownNeed: k shards).
type nack struct {
	Block  uint32
	Shards uint8
}

func (r *report) append(b []byte) []byte {
	b = r.header.append(b)
	b = binary.BigEndian.AppendUint32(b, r.Receiver)
	b = binary.BigEndian.AppendUint32(b, r.Remaining)
	b = binary.BigEndian.AppendUint16(b, r.Loss)
	b = append(b, r.Flags, 0)
	b = binary.BigEndian.AppendUint16(b, uint16(len(r.Entries)))
	for _, e := range r.Entries {
		b = binary.BigEndian.AppendUint32(b, e.Block)
		b = append(b, e.Shards)
	}
	return b
}

// parseReport decodes a report, reusing r.Entries' array.
func parseReport(b []byte, r *report) error {
	h, err := parseHeader(b)
	if err != nil {
		return err
	}
	if h.Type != typeReport || len(b) < reportLen {
		return malformed("report of %d bytes, type %d", len(b), h.Type)
	}
	r.header = h
	r.Receiver = binary.BigEndian.Uint32(b[12:])
	r.Remaining = binary.BigEndian.Uint32(b[16:])
	r.Loss = binary.BigEndian.Uint16(b[20:])
	r.Flags = b[22]
	if b[23] != 0 || r.Flags&^(flagDone|flagLeaving) != 0 || r.Loss > 1000 {
		return malformed("report flags %#x %#x, loss %d", r.Flags, b[23], r.Loss)
	}
	n := int(binary.BigEndian.Uint16(b[24:]))
	if len(b) != reportLen+n*entryLen {
		return malformed("report of %d entries in %d bytes", n, len(b))
	}
	r.Entries = r.Entries[:0]
	for i := range n {
		e := b[reportLen+i*entryLen:]
		r.Entries = append(r.Entries, nack{Block: binary.BigEndian.Uint32(e), Shards: e[4]})
	}
	return nil
}
