package multicast

import (
	"context"
	"fmt"
	"net"
	"syscall"
	"time"

	"golang.org/x/net/ipv4"
)

// PacketConn is the socket a sender or receiver uses: batched reads and
// writes (recvmmsg/sendmmsg on Linux). *ipv4.PacketConn implements it;
// LossyConn wraps one to drop packets in tests.
type PacketConn interface {
	// ReadBatch reads up to len(ms) packets, at least one, into ms.
	ReadBatch(ms []ipv4.Message, flags int) (int, error)
	// WriteBatch sends ms, returning how many went out.
	WriteBatch(ms []ipv4.Message, flags int) (int, error)
	// SetReadDeadline bounds the next reads.
	SetReadDeadline(t time.Time) error
	// Close closes the socket.
	Close() error
}

// socketBuffer is the kernel buffer asked for in each direction: at
// 1 Gbit/s it holds about 130 ms of packets, enough to ride out a
// scheduling hiccup of a receiver sharing two cores with others.
const socketBuffer = 16 << 20

// senderQueue is the send buffer of a sender's socket (the kernel doubles
// it: 2 MiB of packets, about 16 ms at 1 Gbit/s). A packet counts against
// it until it leaves the host, so it bounds what waits in the sender's
// qdisc: when the link falls behind the pacing (a shaper or a NIC served
// late), the sender blocks instead of queueing on. With 16 MiB, a tbf
// shaper with 50 ms of queue, served late now and then on a busy machine,
// fell behind the pacing by a little each time until it dropped whole
// runs of packets, and the session paid in repairs and a lower rate.
const senderQueue = 1 << 20

// ListenGroup opens a receiver's socket: bound to the group's port on
// every address, joined to the group on ifi (nil: the system's choice),
// and taking coalesced runs of packets (offload.go) where the kernel can.
//
// The port is shared (SO_REUSEADDR, and SO_REUSEPORT where there is one,
// as multicast receivers such as uftp's and udp-receiver's set them): two mounts on one
// host both receive. The kernel gives every multicast packet to each
// socket bound to the group's port but a unicast one to only one of them,
// so nothing a receiver needs comes by unicast: the sender multicasts its
// replies too (Sender.control).
func ListenGroup(group *net.UDPAddr, ifi *net.Interface) (*ipv4.PacketConn, error) {
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		if err := rc.Control(func(fd uintptr) { serr = shareAddr(fd) }); err != nil {
			return err
		}
		return serr
	}}
	pc, err := lc.ListenPacket(context.Background(), "udp4", fmt.Sprintf(":%d", group.Port))
	if err != nil {
		return nil, fmt.Errorf("multicast: listen: %w", err)
	}
	c := pc.(*net.UDPConn)
	growBuffers(c, socketBuffer)
	if rc, err := c.SyscallConn(); err == nil {
		_ = rc.Control(func(fd uintptr) { enableGRO(int(fd)) })
	}
	p := ipv4.NewPacketConn(c)
	if err := p.JoinGroup(ifi, &net.UDPAddr{IP: group.IP}); err != nil {
		c.Close()
		return nil, fmt.Errorf("multicast: join %s: %w", group.IP, err)
	}
	return p, nil
}

// DialGroup opens a sender's socket bound to laddr (its port receives the
// receivers' control messages), sending multicast out of ifi (nil: by the
// routing table) with the given TTL (0 means 1: the local network).
func DialGroup(laddr *net.UDPAddr, ifi *net.Interface, ttl int) (*ipv4.PacketConn, error) {
	c, err := net.ListenUDP("udp4", laddr)
	if err != nil {
		return nil, fmt.Errorf("multicast: listen: %w", err)
	}
	growBuffers(c, senderQueue)
	p := ipv4.NewPacketConn(c)
	if ifi != nil {
		if err := p.SetMulticastInterface(ifi); err != nil {
			c.Close()
			return nil, fmt.Errorf("multicast: interface %s: %w", ifi.Name, err)
		}
	}
	if ttl <= 0 {
		ttl = 1
	}
	if err := p.SetMulticastTTL(ttl); err != nil {
		c.Close()
		return nil, err
	}
	if err := p.SetMulticastLoopback(true); err != nil {
		c.Close()
		return nil, err
	}
	return p, nil
}
