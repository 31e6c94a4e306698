package multicast

import (
	"encoding/binary"
	"errors"
	"syscall"

	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// UDP segmentation offload. The sender hands the kernel runs of
// equal-sized packets as one send (UDP_SEGMENT, "GSO"): the stack, the
// qdisc and a bridge or veth on the way carry one buffer of up to 64 KiB
// instead of dozens of packets, and the packets are cut at the NIC or at
// the last moment in software. A receiver's socket takes such runs whole
// (UDP_GRO): the kernel coalesces consecutive packets of a flow, or keeps
// a segmented buffer that arrives as one, and one read returns them all,
// the segment size in a control message. Every packet keeps its own
// header on the wire and in the buffer; only the number of trips through
// the stack and across the system call boundary changes.

// Limits of one segmented send.
const (
	// gsoMaxSegments is the kernel's UDP_MAX_SEGMENTS of older kernels
	// (newer ones allow 128).
	gsoMaxSegments = 64
	// gsoMaxBytes bounds the payload of one segmented send: an IPv4
	// datagram's 65535 bytes less the IP and UDP headers.
	gsoMaxBytes = 65535 - 20 - 8
	// groBufferSize is a receive buffer that holds any coalesced run.
	groBufferSize = 65536
	// oobSize is the control message space a read asks for (a UDP_GRO
	// message takes CmsgSpace(4) = 24 bytes on 64-bit Linux).
	oobSize = 64
)

// enableGRO asks the kernel to pass coalesced runs of packets to the
// socket fd; kernels before 5.0 refuse, and the socket reads one packet at
// a time as before.
func enableGRO(fd int) bool {
	return unix.SetsockoptInt(fd, unix.IPPROTO_UDP, unix.UDP_GRO, 1) == nil
}

// gsoControl returns the control message that makes one send a run of
// packets of size bytes each (the last may be shorter).
func gsoControl(size int) []byte {
	b := make([]byte, unix.CmsgSpace(2))
	h := (*unix.Cmsghdr)(unsafe.Pointer(&b[0]))
	h.Level = unix.IPPROTO_UDP
	h.Type = unix.UDP_SEGMENT
	h.SetLen(unix.CmsgLen(2))
	binary.NativeEndian.PutUint16(b[unix.CmsgLen(0):], uint16(size))
	return b
}

// groSize returns the segment size of a read's coalesced run from its
// control messages, or 0 when the read holds one packet.
func groSize(oob []byte) int {
	for len(oob) >= unix.CmsgLen(0) {
		h, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			return 0
		}
		if h.Level == unix.IPPROTO_UDP && h.Type == unix.UDP_GRO && len(data) >= 4 {
			return int(int32(binary.NativeEndian.Uint32(data)))
		}
		oob = rest
	}
	return 0
}

// received returns what a read holds and the size of its packets: the
// whole buffer as one packet (size len(b)), or a coalesced run to cut
// into packets of size bytes (the last may be shorter). A read the kernel
// truncated (its buffer too small) reports ok=false.
func received(m *ipv4.Message) (b []byte, size int, ok bool) {
	if m.Flags&unix.MSG_TRUNC != 0 {
		return nil, 0, false
	}
	b = m.Buffers[0][:m.N]
	size = groSize(m.OOB[:m.NN])
	if size <= 0 || size > len(b) {
		size = len(b)
	}
	return b, size, true
}

// gsoUnsupported reports whether a send failed because the socket, the
// route or the kernel takes no segmented sends: the sender then sends one
// packet at a time.
func gsoUnsupported(err error) bool {
	return errors.Is(err, syscall.EIO) || errors.Is(err, syscall.EINVAL) ||
		errors.Is(err, syscall.ENOPROTOOPT) || errors.Is(err, syscall.EOPNOTSUPP)
}
