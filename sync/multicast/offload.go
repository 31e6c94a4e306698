package multicast

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
