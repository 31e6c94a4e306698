//go:build linux

package multicast

import (
	"encoding/binary"
	"syscall"
	"testing"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// noGSOConn refuses segmented sends, as a kernel or route without UDP
// segmentation offload does.
type noGSOConn struct{ PacketConn }

func (c noGSOConn) WriteBatch(ms []ipv4.Message, flags int) (int, error) {
	for i, m := range ms {
		if len(m.OOB) > 0 {
			if i == 0 {
				return 0, &ipv4SyscallError{syscall.EIO}
			}
			ms = ms[:i]
			break
		}
	}
	return c.PacketConn.WriteBatch(ms, flags)
}

// ipv4SyscallError is how x/net reports a failed sendmmsg.
type ipv4SyscallError struct{ errno syscall.Errno }

func (e *ipv4SyscallError) Error() string { return "sendmmsg: " + e.errno.Error() }
func (e *ipv4SyscallError) Unwrap() error { return e.errno }

// TestNoSegmentationOffload runs a session whose socket refuses
// segmented sends: the sender falls back to one packet a send and every
// cache still comes out byte-exact.
func TestNoSegmentationOffload(t *testing.T) {
	sendWrap = func(c PacketConn) PacketConn { return noGSOConn{c} }
	defer func() { sendWrap = nil }()
	tn := newTestNet(t, 3)
	tp := newTemplate(t, 64, 22) // 4 MiB
	res := runSession(t, tn, tp, SenderConfig{}, make([]rxSpec, 2))
	if s := res.sender; s.Sends != s.Packets {
		t.Errorf("the sender made %d sends for %d packets after its socket refused segmented sends", s.Sends, s.Packets)
	}
}

// groMessage returns control messages as the kernel writes them for a
// coalesced read: another message first, then UDP_GRO with size.
func groMessage(size int) []byte {
	b := make([]byte, oobSize)
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level, h.Type = unix.IPPROTO_IP, unix.IP_TTL
	h.SetLen(unix.CmsgLen(4))
	next := unix.CmsgSpace(4)
	h = (*unix.Cmsghdr)(unsafe.Pointer(&b[next]))
	h.Level, h.Type = unix.IPPROTO_UDP, unix.UDP_GRO
	h.SetLen(unix.CmsgLen(4))
	binary.NativeEndian.PutUint32(b[next+unix.CmsgLen(0):], uint32(size))
	return b[:next+unix.CmsgSpace(4)]
}

func TestReceived(t *testing.T) {
	buf := make([]byte, 100)
	oob := make([]byte, oobSize)
	gro := groMessage(30)
	cases := []struct {
		name     string
		n        int
		oob      []byte
		flags    int
		size     int
		ok       bool
		wantRead int
	}{
		{"one packet", 70, nil, 0, 70, true, 70},
		{"coalesced", 100, gro, 0, 30, true, 100},
		{"coalesced run shorter than a segment", 20, gro, 0, 20, true, 20},
		{"truncated", 100, nil, unix.MSG_TRUNC, 0, false, 0},
		{"truncated control message", 100, gro[:20], 0, 100, true, 100},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := copy(oob, c.oob)
			m := ipv4.Message{Buffers: [][]byte{buf}, OOB: oob, N: c.n, NN: n, Flags: c.flags}
			b, size, ok := received(&m)
			if ok != c.ok || size != c.size || len(b) != c.wantRead {
				t.Fatalf("received: %d bytes, size %d, ok %v; want %d, %d, %v", len(b), size, ok, c.wantRead, c.size, c.ok)
			}
		})
	}
}

func TestGSOControl(t *testing.T) {
	h, data, rest, err := unix.ParseOneSocketControlMessage(gsoControl(1472))
	if err != nil || h.Level != unix.IPPROTO_UDP || h.Type != unix.UDP_SEGMENT || len(data) != 2 || len(rest) != 0 {
		t.Fatalf("control message: %+v %x %x %v", h, data, rest, err)
	}
	if got := binary.NativeEndian.Uint16(data); got != 1472 {
		t.Fatalf("segment size %d, want 1472", got)
	}
}

// FuzzGROSize feeds arbitrary control messages to groSize: it must never
// panic, and a size it finds must have come from a UDP_GRO message.
// Seeds: testdata/fuzz/FuzzGROSize.
func FuzzGROSize(f *testing.F) {
	f.Add(groMessage(1472))
	f.Add(gsoControl(8972))
	f.Fuzz(func(t *testing.T, in []byte) {
		b := make([]byte, len(in)) // aligned, as a read's buffer is
		copy(b, in)
		if size := groSize(b); size != 0 && len(b) < unix.CmsgLen(4) {
			t.Fatalf("size %d from %d bytes", size, len(b))
		}
	})
}
