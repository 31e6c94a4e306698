//go:build unix

package multicast

import (
	"net"

	"golang.org/x/sys/unix"
)

// shareAddr lets other sockets bind the same address and port.
func shareAddr(fd uintptr) error {
	if err := unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		return err
	}
	return unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
}

// growBuffers asks for a receive buffer of socketBuffer and a send buffer
// of snd, past rmem_max/wmem_max where the system has a way and the
// process may (Linux: CAP_NET_ADMIN), else as large as the limits allow.
func growBuffers(c *net.UDPConn, snd int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		setBuffer(int(fd), rcvBufForce, unix.SO_RCVBUF, socketBuffer)
		setBuffer(int(fd), sndBufForce, unix.SO_SNDBUF, snd)
	})
}

// setBuffer sets a socket buffer to n bytes by the option force (0: none)
// or, failing that, by opt.
func setBuffer(fd, force, opt, n int) {
	if force != 0 && unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, n) == nil {
		return
	}
	_ = unix.SetsockoptInt(fd, unix.SOL_SOCKET, opt, n)
}
