//go:build !linux

package multicast

import "golang.org/x/net/ipv4"

// Segmentation offload (UDP_SEGMENT and UDP_GRO) is Linux's: elsewhere a
// sender sends, and a receiver reads, one packet at a time (x/net's
// ReadBatch and WriteBatch move one message per call outside Linux).

// gsoOffered says a sender never tries segmented sends here.
const gsoOffered = false

// enableGRO does nothing: no coalesced reads here.
func enableGRO(int) bool { return false }

// gsoControl is never called where gsoOffered is false.
func gsoControl(int) []byte { return nil }

// received returns what a read holds: one packet. A datagram larger than
// the buffer (groBufferSize holds any UDP datagram) fails the read itself
// on Windows (WSAEMSGSIZE) rather than coming back truncated.
func received(m *ipv4.Message) (b []byte, size int, ok bool) {
	b = m.Buffers[0][:m.N]
	return b, len(b), true
}

// gsoUnsupported is never asked where gsoOffered is false.
func gsoUnsupported(error) bool { return false }
