package multicast

import (
	"bytes"
	"errors"
	"testing"
)

// samplePackets is one valid packet of each type, the fuzz seeds.
func samplePackets() map[string][]byte {
	out := map[string][]byte{}
	d := dataPacket{header: header{Type: typeData, Session: 7, Seq: 9}, Block: 3, FrameLen: 3000, ShardSize: 1440, Shard: 2}
	d.K, d.M = 3, 4
	b := d.appendHeader(nil)
	out["data-last"] = append(b, bytes.Repeat([]byte{1}, 3000-2*1440)...)
	d.Shard = 5
	out["data-parity"] = append(d.appendHeader(nil), bytes.Repeat([]byte{2}, 1440)...)
	d.Flags, d.Shard = flagEncrypted, 0
	out["data-sealed"] = append(d.appendHeader(nil), bytes.Repeat([]byte{3}, 1440+tagLen)...)
	a := announce{header: header{Type: typeAnnounce, Session: 7, Seq: 1}, Blocks: 10, ShardSize: 1440, Sweep: 1, Cursor: 4, RepairDelay: 3, GroupLoss: 37, Version: 2, Name: "winxp"}
	a.Digest[0] = 1
	out["announce"] = a.append(nil)
	a.Flags = flagEnded | flagEncrypted
	out["announce-ended"] = a.append(nil)
	n := need{header: header{Type: typeNeed, Session: 7}, Receiver: 4, Base: 8192, Bitmap: []byte{0xff, 0x01}}
	out["need"] = n.append(nil)
	ack := needAck{header: header{Type: typeNeedAck, Session: 7}, Receiver: 4, Base: 8192, Sweep: 1, Cursor: 5}
	out["need-ack"] = ack.append(nil)
	r := report{header: header{Type: typeReport, Session: 7, Seq: 3}, Receiver: 4, Remaining: 2, Loss: 120, Entries: []nack{{1, 2}, {5, unknownNeed}}}
	out["report"] = r.append(nil)
	r.Flags, r.Entries = flagDone, nil
	out["report-done"] = r.append(nil)
	return out
}

func TestPacketRoundTrip(t *testing.T) {
	for name, b := range samplePackets() {
		t.Run(name, func(t *testing.T) {
			got, err := reencode(b)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, b) {
				t.Fatalf("re-encoded differs:\n%x\n%x", got, b)
			}
			// Every truncation is malformed, never a panic or a success.
			for i := range len(b) {
				if _, err := reencode(b[:i]); !errors.Is(err, ErrMalformed) {
					t.Fatalf("truncated to %d: %v", i, err)
				}
			}
		})
	}
}

// reencode decodes b by its type and encodes it again.
func reencode(b []byte) ([]byte, error) {
	h, err := parseHeader(b)
	if err != nil {
		return nil, err
	}
	switch h.Type {
	case typeData:
		var d dataPacket
		if err := parseData(b, &d); err != nil {
			return nil, err
		}
		return append(d.appendHeader(nil), d.Payload...), nil
	case typeAnnounce:
		var a announce
		if err := parseAnnounce(b, &a); err != nil {
			return nil, err
		}
		return a.append(nil), nil
	case typeNeed:
		var n need
		if err := parseNeed(b, &n); err != nil {
			return nil, err
		}
		return n.append(nil), nil
	case typeNeedAck:
		var a needAck
		if err := parseNeedAck(b, &a); err != nil {
			return nil, err
		}
		return a.append(nil), nil
	case typeReport:
		var r report
		if err := parseReport(b, &r); err != nil {
			return nil, err
		}
		return r.append(nil), nil
	}
	return nil, malformed("type %d", h.Type)
}

// FuzzDecode feeds arbitrary bytes to every packet decoder. A decoder
// must never panic; it either fails with ErrMalformed or accepts a packet
// that encodes back to exactly the input (one form per packet, so nothing
// forged slips through a lenient parse). Seeds: testdata/fuzz/FuzzDecode.
func FuzzDecode(f *testing.F) {
	for _, b := range samplePackets() {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		got, err := reencode(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error does not wrap ErrMalformed: %v", err)
			}
			return
		}
		if !bytes.Equal(got, b) {
			t.Fatalf("accepted packet re-encodes differently:\n%x\n%x", b, got)
		}
		var d dataPacket
		if parseData(b, &d) == nil {
			k, m, ok := shardGeometry(int(d.FrameLen), int(d.ShardSize))
			if !ok || int(d.Shard) >= k+m || k > MaxDataShards || k+m > MaxShards {
				t.Fatalf("accepted geometry k=%d m=%d shard %d", k, m, d.Shard)
			}
		}
	})
}
