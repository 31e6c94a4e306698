package client

import (
	"net"
	"testing"
)

func TestOnThisMachine(t *testing.T) {
	cases := map[string]bool{
		"http://127.0.0.1:7420": true,
		"http://localhost:7420": true,
		"http://[::1]:7420":     true,
		"http://192.0.2.1:7420": false, // TEST-NET-1: never this machine
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && n.IP.To4() != nil {
			cases["https://"+n.IP.String()+":7420"] = true
			break
		}
	}
	for server, want := range cases {
		c, err := New(Config{Server: server})
		if err != nil {
			t.Fatal(err)
		}
		if got := c.OnThisMachine(t.Context()); got != want {
			t.Errorf("OnThisMachine for %s = %v, want %v", server, got, want)
		}
	}
}
