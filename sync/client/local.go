package client

import (
	"context"
	"net"
)

// OnThisMachine reports whether the server's host is this machine: a
// loopback address, or an address of one of its interfaces (a name is
// resolved). Then the server shares this machine's cores, and the link
// between them is memory: sending plain bytes costs less than compressing
// them (see publish.Config.Deferred).
func (c *Client) OnThisMachine(ctx context.Context) bool {
	host := c.server().Hostname()
	ips, err := net.DefaultResolver.LookupIP(ctx, "ip", host)
	if err != nil || len(ips) == 0 {
		return false
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ip := range ips {
		if ip.IsLoopback() || ip.IsUnspecified() {
			continue
		}
		local := false
		for _, a := range addrs {
			if n, ok := a.(*net.IPNet); ok && n.IP.Equal(ip) {
				local = true
				break
			}
		}
		if !local {
			return false
		}
	}
	return true
}
