package chaos

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os/exec"
	"strings"
	"testing"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// TestCheckRoutesKernel runs the table invariant against a real kernel
// table in a namespace: exact routes pass; a stale route, a missing one,
// a wrong next hop or MTU fail; foreign routes are listed as planted.
func TestCheckRoutesKernel(t *testing.T) {
	testutil.NeedRoot(t, "makes a network namespace and routes in it")
	ctx := t.Context()
	ns := fmt.Sprintf("chaosut%05x", rand.IntN(1<<20))
	run := func(args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, "ip", append([]string{"-n", ns}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	if out, err := exec.CommandContext(ctx, "ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "del", ns).Run() })
	run("link", "add", "tailscale0", "type", "veth", "peer", "name", "eth0")
	for _, dev := range []string{"lo", "tailscale0", "eth0"} {
		run("link", "set", dev, "up")
	}
	run("addr", "add", "100.64.0.1/32", "dev", "tailscale0")
	run("addr", "add", "192.168.0.11/24", "dev", "eth0")

	l := testLab()
	l.Table, l.Protocol = 244, 244
	a := l.Nodes[1]
	a.NS = ns
	route := func(op, dst, via, dev, mtu string) {
		t.Helper()
		run("route", op, dst, "via", via, "dev", dev, "onlink", "table", "244", "proto", "244", "mtu", mtu)
	}
	route("add", "10.244.0.0/24", "100.64.0.4", "tailscale0", "1280")
	route("add", "10.244.2.0/24", "192.168.0.12", "eth0", "1500")
	if err := checkRoutes(l, a, nil); err != nil {
		t.Fatalf("exact table: %v", err)
	}
	extra := map[string]netip.Prefix{"b": netip.MustParsePrefix("10.244.5.0/26")}
	if err := checkRoutes(l, a, extra); err == nil || !strings.Contains(err.Error(), "missing [\"10.244.5.0/26 via 192.168.0.12 dev eth0 mtu 1500\"]") {
		t.Errorf("missing block: %v", err)
	}
	route("add", "10.244.9.0/24", "100.64.0.4", "tailscale0", "1280")
	if err := checkRoutes(l, a, nil); err == nil || !strings.Contains(err.Error(), "10.244.9.0/24") {
		t.Errorf("stale route: %v", err)
	}
	run("route", "del", "10.244.9.0/24", "table", "244")
	route("replace", "10.244.2.0/24", "100.64.0.2", "tailscale0", "1280") // overlay where the LAN should be
	if err := checkRoutes(l, a, nil); err == nil || !strings.Contains(err.Error(), "10.244.2.0/24 via 100.64.0.2 dev tailscale0") {
		t.Errorf("wrong next hop: %v", err)
	}
	route("replace", "10.244.2.0/24", "192.168.0.12", "eth0", "1400")
	if err := checkRoutes(l, a, nil); err == nil || !strings.Contains(err.Error(), "mtu 1400") {
		t.Errorf("wrong MTU: %v", err)
	}

	l.Nodes = []*lab.Node{a}
	planted, err := plantForeign(context.Background(), l)
	if err != nil {
		t.Fatal(err)
	}
	if s := planted[a.Name]; !strings.Contains(s, "blackhole "+foreignInTable) || !strings.Contains(s, "blackhole "+foreignInMain) {
		t.Fatalf("planted: %q", s)
	}
	run("route", "del", foreignInMain)
	if s, _ := foreignText(ctx, l, a); s == planted[a.Name] {
		t.Error("a removed foreign route went unnoticed")
	}
}
