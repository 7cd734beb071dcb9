package e2e

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// rogueConf is a gobgpd that takes the place of node old (its netd held)
// and peers with the other nodes from old's overlay address.
const rogueConf = `[global.config]
  as = 64512
  router-id = "100.64.0.3"
  local-address-list = ["100.64.0.3"]
  port = 179
[[neighbors]]
  [neighbors.config]
    neighbor-address = "100.64.0.1"
    peer-as = 64512
  [neighbors.transport.config]
    local-address = "100.64.0.3"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "100.64.0.2"
    peer-as = 64512
  [neighbors.transport.config]
    local-address = "100.64.0.3"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "100.64.0.4"
    peer-as = 64512
  [neighbors.transport.config]
    local-address = "100.64.0.3"
`

// TestHostilePeer replaces node old's netd with a rogue gobgpd that
// announces firebat's block, a more-specific of ultra's block, a
// more-specific of its own block and a prefix outside the pod CIDR: every
// one is rejected with its reason, counted, logged once, and pod traffic
// to the real owners is unaffected. (More than the limit: the validator
// refuses a node limit below a node's block count, so that case is the
// BIRD peer's in TestInteropHomeRouters.) BGP answers only on the overlay
// address.
func TestHostilePeer(t *testing.T) {
	t.Parallel() // see doc.go
	needBin(t, "gobgpd", "gobgp")
	l := upLab(t, "old")
	old, _ := l.Node("old")
	cfg := tempFile(t, "rogue.toml", []byte(rogueConf))
	logPath := filepath.Join(t.TempDir(), "gobgpd.log")
	if _, err := l.Spawn("rogue", old.NS, logPath, "gobgpd", "-f", cfg, "--api-hosts", "127.0.0.1:50052", "--pprof-disable", "-p"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- gobgpd log:\n%s", testutil.Tail(string(b), 40))
			out, _ := runIn(old.NS, "gobgp", "-p", "50052", "neighbor")
			t.Logf("--- rogue's neighbors:\n%s", out)
		}
		_ = l.StopProc(context.Background(), "rogue", 5*time.Second)
	})
	rogue := func(args ...string) {
		t.Helper()
		testutil.Poll(t, 30*time.Second, "gobgp "+strings.Join(args, " "), func() (bool, error) {
			_, err := runIn(old.NS, append([]string{"gobgp", "-p", "50052"}, args...)...)
			return err == nil, nil
		})
	}
	ann := map[string]string{
		"10.244.1.0/24":   "not_owned",        // firebat's block
		"10.244.2.128/25": "not_owned",        // a more-specific of ultra's block
		"10.244.3.128/25": "not_allowed",      // a more-specific of its own block
		"192.0.2.0/24":    "outside_pod_cidr", // outside the pod CIDR
		"10.244.3.0/24":   "",                 // its own: accepted
	}
	for p := range ann {
		rogue("global", "rib", "add", p, "-a", "ipv4", "nexthop", "100.64.0.3")
	}
	victims := []string{"firebat", "ultra", "control-plane"}
	for _, v := range victims {
		testutil.Poll(t, 60*time.Second, v+" accepts the rogue's allowed block", func() (bool, error) {
			return kernelHas(t, l, v, "10.244.3.0/24"), nil
		})
		testutil.Poll(t, 30*time.Second, v+" counted every rejection", func() (bool, error) {
			return metric(t, l, v, "netd_bgp_prefixes_rejected_total", `peer="old",reason="outside_pod_cidr"`) == 1 &&
				metric(t, l, v, "netd_bgp_prefixes_rejected_total", `peer="old",reason="not_allowed"`) == 1 &&
				metric(t, l, v, "netd_bgp_prefixes_rejected_total", `peer="old",reason="not_owned"`) == 2, nil
		})
	}
	// More refreshes: re-announce, then check each rejection was logged once.
	rogue("global", "rib", "del", "10.244.3.0/24", "-a", "ipv4")
	rogue("global", "rib", "add", "10.244.3.0/24", "-a", "ipv4", "nexthop", "100.64.0.3")
	for _, v := range victims {
		testutil.Poll(t, 30*time.Second, v+" re-accepts the rogue's block", func() (bool, error) {
			return kernelHas(t, l, v, "10.244.3.0/24"), nil
		})
		for p, reason := range ann {
			if reason == "" {
				continue
			}
			if kernelHas(t, l, v, p, "100.64.0.3") || kernelHas(t, l, v, p, "192.168.0.13") {
				t.Errorf("%s routes the rogue's %s to it", v, p)
			}
			if n := logCount(t, l, v, "bgp path rejected", `"prefix":"`+p+`"`, `"reason":"`+reason+`"`); n != 1 {
				t.Errorf("%s logged the rejection of %s (%s) %d times, want once", v, p, reason, n)
			}
		}
	}
	// Traffic to the real owners is unaffected.
	fb, _ := l.Node("firebat")
	ul, _ := l.Node("ultra")
	cp, _ := l.Node("control-plane")
	for _, pair := range [][2]*lab.Node{{ul, fb}, {cp, fb}, {fb, ul}, {cp, ul}} {
		s, d := pair[0].Pods[0], pair[1].Pods[1]
		if r, err := lab.Ping(t.Context(), s.NS, s.Addr, d.Addr, 84, false, 3*time.Second); err != nil || !r.Reply {
			t.Errorf("%s -> %s: %v %v", s.NS, d.Addr, r, err)
		}
	}
	if h, err := l.Path(ul.Pods[0], fb.Pods[0].Addr); err != nil || h.Via != fb.LANAddr {
		t.Errorf("ultra -> firebat pod goes %v (%v), want via firebat's LAN address", h, err)
	}

	// BGP listens on the overlay address only.
	dial := func(ns, addr string) error {
		return lab.InNS(ns, func() error {
			c, err := net.DialTimeout("tcp4", addr, 2*time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	}
	if err := dial(ul.NS, "100.64.0.1:179"); err != nil {
		t.Errorf("connect to firebat's overlay address: %v, want a BGP listener", err)
	}
	for _, c := range []struct{ ns, addr string }{
		{ul.NS, "192.168.0.11:179"}, {fb.NS, "192.168.0.11:179"}, {fb.NS, "127.0.0.1:179"},
	} {
		if err := dial(c.ns, c.addr); err == nil {
			t.Errorf("TCP connect from %s to %s succeeded; BGP must listen only on the overlay address", c.ns, c.addr)
		}
	}
}
