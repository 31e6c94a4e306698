package multicast

import (
	"encoding/binary"
	"errors"
	"syscall"
	"unsafe"

	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// gsoOffered says a sender starts with segmented sends: Linux has them
// (since 4.18), and a kernel that refuses them is found at the first send.
const gsoOffered = true

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
