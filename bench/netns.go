//go:build linux

package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// testNet is a network the harness builds: one namespace per node, each
// with an eth0 veth whose peer is a port of a bridge in a namespace of
// its own (as sync/multicast's tests do). Node 0 is the sender,
// 10.78.0.1; node i is 10.78.0.(i+1). Nothing touches the host's
// namespace beyond naming the namespaces.
type testNet struct {
	prefix string
	bridge string
	nodes  []string
}

// newTestNet builds a bridge and nodes namespaces on it. close removes
// them; call it on every exit path.
func newTestNet(nodes int) (*testNet, error) {
	tn := &testNet{prefix: fmt.Sprintf("dvmb%d", os.Getpid())}
	tn.bridge = tn.prefix + "-br"
	if err := tn.build(nodes); err != nil {
		tn.close()
		return nil, err
	}
	return tn, nil
}

func (tn *testNet) build(nodes int) error {
	if err := ipCmd("netns", "add", tn.bridge); err != nil {
		return err
	}
	if err := ipCmd("-n", tn.bridge, "link", "add", "br0", "type", "bridge", "mcast_snooping", "0"); err != nil {
		return err
	}
	if err := ipCmd("-n", tn.bridge, "link", "set", "br0", "up"); err != nil {
		return err
	}
	for i := range nodes {
		ns := fmt.Sprintf("%s-%d", tn.prefix, i)
		if err := ipCmd("netns", "add", ns); err != nil {
			return err
		}
		tn.nodes = append(tn.nodes, ns)
		port := fmt.Sprintf("p%d", i)
		for _, args := range [][]string{
			{"-n", tn.bridge, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns},
			{"-n", tn.bridge, "link", "set", port, "master", "br0", "up"},
			{"-n", ns, "link", "set", "lo", "up"},
			{"-n", ns, "link", "set", "eth0", "up"},
			{"-n", ns, "addr", "add", tn.addr(i).String() + "/24", "dev", "eth0"},
			{"-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0"},
		} {
			if err := ipCmd(args...); err != nil {
				return err
			}
		}
	}
	return nil
}

// shape limits the egress of node i's eth0 (towards the bridge) with tbf;
// tbf on the bridge's port would shape traffic towards the node instead.
func (tn *testNet) shape(i int, rate string) ([]string, error) {
	args := []string{"ip", "netns", "exec", tn.nodes[i], "tc", "qdisc", "add", "dev", "eth0", "root",
		"tbf", "rate", rate, "burst", "256kb", "latency", "50ms"}
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return args, nil
}

// setMTU sets the MTU of every node's eth0, every bridge port and the
// bridge (9000: jumbo frames).
func (tn *testNet) setMTU(mtu int) error {
	m := strconv.Itoa(mtu)
	for i, ns := range tn.nodes {
		if err := ipCmd("-n", tn.bridge, "link", "set", fmt.Sprintf("p%d", i), "mtu", m); err != nil {
			return err
		}
		if err := ipCmd("-n", ns, "link", "set", "eth0", "mtu", m); err != nil {
			return err
		}
	}
	return ipCmd("-n", tn.bridge, "link", "set", "br0", "mtu", m)
}

func (tn *testNet) close() {
	for _, ns := range append([]string{tn.bridge}, tn.nodes...) {
		_ = exec.Command("ip", "netns", "del", ns).Run()
	}
}

func (tn *testNet) addr(i int) net.IP { return net.IPv4(10, 78, 0, byte(i+1)) }

// exec returns a command run in node i's namespace.
func (tn *testNet) exec(i int, name string, args ...string) *exec.Cmd {
	return exec.Command("ip", append([]string{"netns", "exec", tn.nodes[i], name}, args...)...)
}

func ipCmd(args ...string) error {
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		return fmt.Errorf("ip %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

// in runs fn on a locked OS thread inside node i's namespace: sockets
// opened there stay in it after the thread leaves.
func (tn *testNet) in(i int, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(orig)
		target, err := unix.Open("/var/run/netns/"+tn.nodes[i], unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			errc <- err
			return
		}
		defer unix.Close(target)
		if err := unix.Setns(target, unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("setns %s: %w", tn.nodes[i], err)
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

// shapeBoth limits node i's link in both directions with tbf: its eth0's
// egress (what it sends) and the egress of its bridge port (what it
// receives; a bridge port's shaping applies towards that node only). A
// second call replaces the rate. It returns the commands.
func (tn *testNet) shapeBoth(i int, rate string) ([]string, error) {
	var lines []string
	for _, c := range [][]string{
		{"ip", "netns", "exec", tn.nodes[i], "tc", "qdisc", "replace", "dev", "eth0", "root"},
		{"ip", "netns", "exec", tn.bridge, "tc", "qdisc", "replace", "dev", fmt.Sprintf("p%d", i), "root"},
	} {
		args := append(c, "tbf", "rate", rate, "burst", "256kb", "latency", "50ms")
		if out, err := exec.Command(args[0], args[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s: %v\n%s", strings.Join(args, " "), err, out)
		}
		lines = append(lines, strings.Join(args, " "))
	}
	return lines, nil
}
