package probe

import (
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/vishvananda/netns"

	"github.com/ducksnest/netd/internal/testutil"
)

// ip runs an iproute2 command and fails the test on error.
func ip(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
		t.Fatalf("ip %v: %v: %s", args, err, out)
	}
}

// inNamedNS runs fn on a thread in the named namespace: the sockets it
// opens stay in that namespace.
func inNamedNS(name string, fn func() error) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	h, err := netns.GetFromName(name)
	if err != nil {
		return err
	}
	defer h.Close()
	if err := netns.Set(h); err != nil {
		return err
	}
	defer func() { _ = netns.Set(orig) }()
	return fn()
}

// inNS opens the prober's ICMP socket inside the named namespace.
func inNS(name string) func(netip.Addr) (PacketConn, error) {
	return func(src netip.Addr) (c PacketConn, err error) {
		err = inNamedNS(name, func() error {
			c, err = listenEchoReplies(src)
			return err
		})
		return c, err
	}
}

// TestProberLANPath probes a peer across a real veth pair in two fresh
// namespaces, with the default timers: the path is up while the peer
// answers, goes down when the peer's link goes down, and comes back when
// it is up again. The exact hysteresis is tested in virtual time
// (hysteresis_test.go); this test adds the kernel's ICMP.
func TestProberLANPath(t *testing.T) {
	testutil.NeedRoot(t, "creates network namespaces")
	a, b := fmt.Sprintf("netd-probe-a-%d", os.Getpid()), fmt.Sprintf("netd-probe-b-%d", os.Getpid())
	for _, n := range []string{a, b} {
		ip(t, "netns", "add", n)
		t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", n).Run() })
	}
	ip(t, "-n", a, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", b)
	ip(t, "-n", a, "addr", "add", "192.168.0.11/24", "dev", "eth0")
	ip(t, "-n", b, "addr", "add", "192.168.0.12/24", "dev", "eth0")
	ip(t, "-n", a, "link", "set", "eth0", "up")
	ip(t, "-n", b, "link", "set", "eth0", "up")

	reg := prometheus.NewRegistry()
	p, err := New(slog.New(slog.DiscardHandler), reg, Options{Listen: inNS(a)})
	if err != nil {
		t.Fatal(err)
	}
	peer := netip.MustParseAddr("192.168.0.12")
	p.SetTargets(netip.MustParseAddr("192.168.0.11"), []Target{{Name: "ultra", Addr: peer}})
	ctx := t.Context()
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()

	testutil.Eventually(t, 5*time.Second, "a reply", func() bool {
		s := p.Status()
		return len(s) == 1 && s[0].LastRTT != ""
	})
	if !p.Up(peer) {
		t.Fatal("path down although the peer answers")
	}
	ip(t, "-n", b, "link", "set", "eth0", "down")
	took := testutil.Eventually(t, 5*time.Second, "path down", func() bool { return !p.Up(peer) })
	t.Logf("path down %v after the peer's link went down (default interval, DownAfter 3)", took)
	select {
	case <-p.Changes():
	default:
		t.Error("no change signalled for down")
	}
	ip(t, "-n", b, "link", "set", "eth0", "up")
	testutil.Eventually(t, 10*time.Second, "path up", func() bool { return p.Up(peer) })
	s := p.Status()
	if s[0].Flaps != 2 {
		t.Errorf("flaps = %d, want 2 (down, up)", s[0].Flaps)
	}
	if got := p.Up(netip.MustParseAddr("192.168.0.99")); got {
		t.Error("an address that is not probed must be reported down")
	}
}
