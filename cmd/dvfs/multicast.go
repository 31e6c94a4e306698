package main

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/dvfs-project/dvfs/blockstore/manifest"
	"github.com/dvfs-project/dvfs/sync/multicast"
	"github.com/dvfs-project/dvfs/sync/repo"
)

// multicastConfig holds the multicast flags of dvfs serve.
type multicastConfig struct {
	group      string        // group IP:port; empty: no multicast
	iface      string        // interface to send on; empty: by the routing table
	rate       string        // maximum rate, e.g. 1gbit
	packetSize int           // largest UDP payload
	encrypt    bool          // AES-GCM payloads, keys over the API
	onPublish  bool          // a session for every new version
	every      time.Duration // push every template's latest version this often; 0: never
	receivers  int           // start a session once this many workstations joined; 0: after the join window
}

// parseRate reads a rate like 1gbit, 500mbit, 100MB/s into bytes per second.
func parseRate(s string) (int64, error) {
	s = strings.ToLower(strings.TrimSpace(s))
	units := []struct {
		suffix string
		mult   float64
	}{{"gbit", 1e9 / 8}, {"mbit", 1e6 / 8}, {"kbit", 1e3 / 8}, {"gb/s", 1e9}, {"mb/s", 1e6}, {"kb/s", 1e3}}
	for _, u := range units {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseFloat(n, 64)
			if err != nil || v <= 0 {
				return 0, fmt.Errorf("rate %q: want a number before %s", s, u.suffix)
			}
			return int64(v * u.mult), nil
		}
	}
	return 0, fmt.Errorf("rate %q: want e.g. 1gbit, 500mbit or 100MB/s", s)
}

// interfaceIP returns an interface and its first IPv4 address.
func interfaceIP(name string) (*net.Interface, net.IP, error) {
	if name == "" {
		return nil, nil, nil
	}
	ifi, err := net.InterfaceByName(name)
	if err != nil {
		return nil, nil, err
	}
	addrs, err := ifi.Addrs()
	if err != nil {
		return nil, nil, err
	}
	for _, a := range addrs {
		if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
			return ifi, ipn.IP, nil
		}
	}
	return ifi, nil, fmt.Errorf("interface %s has no IPv4 address", name)
}

// startMulticast makes the server's session runner and starts it.
func startMulticast(ctx context.Context, g *globals, c multicastConfig, r *repo.Repo) (*multicast.Sessions, error) {
	group, err := net.ResolveUDPAddr("udp4", c.group)
	if err != nil || !group.IP.IsMulticast() {
		return nil, fmt.Errorf("--multicast-group %q is not a multicast IPv4 address and port", c.group)
	}
	rate, err := parseRate(c.rate)
	if err != nil {
		return nil, fmt.Errorf("--multicast-rate: %w", err)
	}
	ifi, ip, err := interfaceIP(c.iface)
	if err != nil {
		return nil, fmt.Errorf("--multicast-iface: %w", err)
	}
	conn, err := multicast.DialGroup(&net.UDPAddr{IP: ip}, ifi, 0)
	if err != nil {
		return nil, err
	}
	pub := r.PublicKey()
	sessions := multicast.NewSessions(multicast.SessionsConfig{
		Conn: conn, Group: group, Source: r, MaxRate: rate, PacketSize: c.packetSize, Encrypt: c.encrypt,
		MinReceivers: c.receivers, Logger: g.log,
		Manifest: func(ctx context.Context, name string, version uint64) (*manifest.Manifest, error) {
			signed, err := r.Signed(ctx, name, version)
			if err != nil {
				return nil, err
			}
			m, _, err := manifest.Open(signed, ed25519.PublicKey(pub))
			return m, err
		},
	})
	go func() { sessions.Run(ctx); conn.Close() }()
	if c.every > 0 {
		go func() {
			t := time.NewTicker(c.every)
			defer t.Stop()
			for {
				select {
				case <-t.C:
				case <-ctx.Done():
					return
				}
				list, err := r.List(ctx)
				if err != nil {
					continue
				}
				for _, tpl := range list {
					sessions.Push(ctx, tpl.Name, 0)
				}
			}
		}()
	}
	g.log.Info("multicast sessions enabled", "group", group, "rate_bytes_per_s", rate, "encrypt", c.encrypt, "on_publish", c.onPublish, "every", c.every, "receivers", c.receivers)
	return sessions, nil
}
