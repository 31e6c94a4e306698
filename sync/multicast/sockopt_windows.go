package multicast

import (
	"net"

	"golang.org/x/sys/windows"
)

// shareAddr lets other sockets bind the same address and port: on
// Windows SO_REUSEADDR alone does what SO_REUSEPORT adds on Linux, and
// every socket bound to the group's port gets each multicast packet.
func shareAddr(fd uintptr) error {
	return windows.SetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, windows.SO_REUSEADDR, 1)
}

// growBuffers asks for a receive buffer of socketBuffer and a send buffer
// of snd (Windows has no rmem_max to pass).
func growBuffers(c *net.UDPConn, snd int) {
	rc, err := c.SyscallConn()
	if err != nil {
		return
	}
	_ = rc.Control(func(fd uintptr) {
		_ = windows.SetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, windows.SO_RCVBUF, socketBuffer)
		_ = windows.SetsockoptInt(windows.Handle(fd), windows.SOL_SOCKET, windows.SO_SNDBUF, snd)
	})
}
