//go:build linux

package multicast

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/sys/unix"
)

// testNet is a network the test builds: one namespace per node, each with
// an eth0 veth whose peer is a port of a bridge in a namespace of its own.
// Node 0 is the sender, 10.77.0.1; node i is 10.77.0.(i+1). Nothing
// touches the host's namespace beyond naming the namespaces.
type testNet struct {
	prefix string
	nodes  []string
	bridge string
}

var netSeq atomic.Int32

// needNetns skips a test that needs root, unless CI is set: there it must
// run.
func needNetns(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 && os.Getenv("CI") == "" {
		t.Skip("needs root for network namespaces (set CI to make this a failure)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("needs iproute2 (set CI to make this a failure)")
		}
		t.Fatal("needs iproute2 (ip)")
	}
}

// newTestNet builds a bridge and nodes namespaces on it; t.Cleanup
// removes them.
func newTestNet(t testing.TB, nodes int) *testNet {
	t.Helper()
	needNetns(t)
	tn := &testNet{prefix: fmt.Sprintf("dvmc%d-%d", os.Getpid(), netSeq.Add(1))}
	tn.bridge = tn.prefix + "-br"
	t.Cleanup(func() {
		for _, ns := range append([]string{tn.bridge}, tn.nodes...) {
			_ = exec.Command("ip", "netns", "del", ns).Run()
		}
	})
	sh := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
	sh("netns", "add", tn.bridge)
	sh("-n", tn.bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0")
	sh("-n", tn.bridge, "link", "set", "br0", "up")
	for i := range nodes {
		ns := fmt.Sprintf("%s-%d", tn.prefix, i)
		tn.nodes = append(tn.nodes, ns)
		port := fmt.Sprintf("p%d", i)
		sh("netns", "add", ns)
		sh("-n", tn.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
		sh("-n", tn.bridge, "link", "set", port, "master", "br0", "up")
		sh("-n", ns, "link", "set", "lo", "up")
		sh("-n", ns, "link", "set", "eth0", "up")
		sh("-n", ns, "addr", "add", tn.addr(i).String()+"/24", "dev", "eth0")
		sh("-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
	}
	return tn
}

func (tn *testNet) addr(i int) net.IP { return net.IPv4(10, 77, 0, byte(i+1)) }

// setMTU sets the MTU of every node's eth0, every bridge port and the
// bridge: 9000 makes a jumbo-frame network.
func (tn *testNet) setMTU(t testing.TB, mtu int) {
	t.Helper()
	m := fmt.Sprint(mtu)
	for i, ns := range tn.nodes {
		for _, args := range [][]string{
			{"-n", tn.bridge, "link", "set", fmt.Sprintf("p%d", i), "mtu", m},
			{"-n", ns, "link", "set", "eth0", "mtu", m},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	}
	if out, err := exec.Command("ip", "-n", tn.bridge, "link", "set", "br0", "mtu", m).CombinedOutput(); err != nil {
		t.Fatalf("ip link set br0 mtu %s: %v\n%s", m, err, out)
	}
}

// ipStat reads a counter of the Ip line of node i's /proc/net/snmp
// (FragCreates: the datagrams this node had to fragment).
func (tn *testNet) ipStat(t testing.TB, i int, name string) int64 {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", tn.nodes[i], "cat", "/proc/net/snmp").Output()
	if err != nil {
		t.Fatalf("/proc/net/snmp of %s: %v", tn.nodes[i], err)
	}
	var keys []string
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || f[0] != "Ip:" {
			continue
		}
		if keys == nil {
			keys = f
			continue
		}
		for j, k := range keys {
			if k == name && j < len(f) {
				var v int64
				fmt.Sscan(f[j], &v)
				return v
			}
		}
	}
	t.Fatalf("no Ip counter %s in /proc/net/snmp of %s", name, tn.nodes[i])
	return 0
}

// in runs fn on an OS thread inside node i's namespace: sockets opened
// there stay in it after the thread leaves.
func (tn *testNet) in(i int, fn func() error) error {
	return inNetns(tn.nodes[i], fn)
}

func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/var/run/netns/"+ns, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = fn()
		// Back to the original namespace; if that fails the thread stays
		// locked and dies with this goroutine.
		if unix.Setns(orig, unix.CLONE_NEWNET) == nil {
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}
