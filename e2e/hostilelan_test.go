package e2e

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/policy"
)

// lanRogueConf is a gobgpd home router on the LAN (192.168.0.1) peering
// with the home nodes over ebgp-multihop, as the example's home-router.
const lanRogueConf = `[global.config]
  as = 64513
  router-id = "192.168.0.1"
  local-address-list = ["192.168.0.1"]
  port = 179
[[peer-groups]]
  [peer-groups.config]
    peer-group-name = "nodes"
    peer-as = 64512
  [peer-groups.ebgp-multihop.config]
    enabled = true
    multihop-ttl = 2
  [peer-groups.transport.config]
    local-address = "192.168.0.1"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "100.64.0.1"
    peer-group = "nodes"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "100.64.0.2"
    peer-group = "nodes"
[[neighbors]]
  [neighbors.config]
    neighbor-address = "100.64.0.3"
    peer-group = "nodes"
`

// lanPeerPolicy is the example's home router with an import the policy
// allows: a range outside every cluster range, and one exact LAN subnet
// behind the router, opted in under importReserved.
const lanPeerPolicy = `      - name: home-router
        address: 192.168.0.1
        asn: 64513
        export: [pods]
        import: ["172.16.0.0/12 le 24"]
        importReserved: ["192.168.0.128/25"]
`

// TestHostileLANPeer puts a gobgpd home router on the LAN that announces
// what would capture the cluster's traffic if it reached netd's table
// (looked up before main): a pod block of a node, a more-specific of one,
// the service CIDR, the overlay, a host route to a node's overlay
// address, the LAN prefix and a more-specific of it holding the nodes,
// the default route, and an allowed prefix with another node as next
// hop. None of it is installed, each is counted as reserved (or
// next_hop), the sessions stay up and the lab check passes; what the
// policy allows (and the one LAN subnet it opts in) is installed via the
// router. A policy whose import reaches the cluster's ranges is refused
// on reload, with positions, and changes nothing.
func TestHostileLANPeer(t *testing.T) {
	needBin(t, "gobgpd", "gobgp")
	l := upLabWith(t, examplePolicy(t, examplePeer, lanPeerPolicy))
	ctx := t.Context()
	r, err := l.AddRouter(ctx, "rogue", lab.OnLAN, netip.MustParsePrefix("192.168.0.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	cfg := tempFile(t, "rogue.toml", []byte(lanRogueConf))
	logPath := filepath.Join(t.TempDir(), "gobgpd.log")
	if _, err := l.Spawn("lan-rogue", r.NS, logPath, "gobgpd", "-f", cfg, "--api-hosts", "127.0.0.1:50053", "--pprof-disable", "-p"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(logPath)
			t.Logf("--- gobgpd log:\n%s", testutil.Tail(string(b), 40))
			out, _ := runIn(r.NS, "gobgp", "-p", "50053", "neighbor")
			t.Logf("--- rogue's neighbors:\n%s", out)
		}
		_ = l.StopProc(context.Background(), "lan-rogue", 5*time.Second)
	})
	add := func(p, nh string) {
		t.Helper()
		testutil.Poll(t, 30*time.Second, "gobgp global rib add "+p, func() (bool, error) {
			_, err := runIn(r.NS, "gobgp", "-p", "50053", "global", "rib", "add", p, "-a", "ipv4", "nexthop", nh)
			return err == nil, nil
		})
	}
	home := []string{"firebat", "ultra", "old"}
	for _, n := range home {
		testutil.Poll(t, 90*time.Second, n+" establishes the home router session", func() (bool, error) {
			ps, err := l.PeerStates(ctx, n)
			return err == nil && ps["home-router"] == "established", nil
		})
	}
	hostile := map[string]string{
		"10.244.1.0/24":   "reserved", // firebat's pod block
		"10.244.2.128/25": "reserved", // a more-specific of ultra's block
		"10.244.9.0/24":   "reserved", // an unused part of the pod CIDR
		"10.96.0.0/12":    "reserved", // the service CIDR
		"100.64.0.0/10":   "reserved", // the overlay
		"100.64.0.3/32":   "reserved", // old's overlay address (its BGP sessions)
		"192.168.0.0/24":  "reserved", // the LAN
		"192.168.0.0/25":  "reserved", // a more-specific of the LAN holding the nodes
		"0.0.0.0/0":       "reserved", // the default route
		"172.16.2.0/24":   "next_hop", // allowed, but via ultra, not the router
	}
	for p, reason := range hostile {
		nh := "192.168.0.1"
		if reason == "next_hop" {
			nh = "192.168.0.12"
		}
		add(p, nh)
	}
	add("172.16.1.0/24", "192.168.0.1")
	add("192.168.0.128/25", "192.168.0.1")
	for _, n := range home {
		testutil.Poll(t, 60*time.Second, n+" installs the allowed prefix and the opted-in LAN subnet via the router", func() (bool, error) {
			return kernelHas(t, l, n, "172.16.1.0/24", "via 192.168.0.1") && kernelHas(t, l, n, "192.168.0.128/25", "via 192.168.0.1"), nil
		})
		testutil.Poll(t, 30*time.Second, n+" logs every rejection", func() (bool, error) {
			for p, reason := range hostile {
				if logCount(t, l, n, "bgp path rejected", `"prefix":"`+p+`"`, `"reason":"`+reason+`"`) != 1 {
					return false, nil
				}
			}
			return metric(t, l, n, "netd_bgp_prefixes_rejected_total", `peer="home-router",reason="next_hop"`) == 1 &&
				metric(t, l, n, "netd_bgp_prefixes_rejected_total", `peer="home-router",reason="reserved"`) >= float64(len(hostile)-1), nil
		})
	}
	noHostile := func(what string) {
		t.Helper()
		for _, n := range home {
			for p := range hostile {
				if kernelHas(t, l, n, ipRouteDst(p), "via 192.168.0.1 ") {
					t.Errorf("%s: %s installed the router's %s", what, n, p)
				}
			}
			if ps, err := l.PeerStates(ctx, n); err != nil || ps["home-router"] != "established" {
				t.Errorf("%s: %s's session with the home router is %q (%v)", what, n, ps["home-router"], err)
			}
			if ok, err := sessionsUp(t, l, n); !ok || err != nil {
				t.Errorf("%s: %s's sessions with the nodes are not all up (%v)", what, n, err)
			}
		}
		rep, err := l.Check(ctx, lab.CheckOptions{})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			failed := 0
			for _, p := range rep.Pairs {
				if !p.OK() {
					failed++
				}
			}
			t.Errorf("%s: lab check fails: %d of %d pod pairs", what, failed, len(rep.Pairs))
		}
	}
	noHostile("hostile announcements")

	// A broad import: refused by the validator with positions, and by
	// every netd on reload (the last good policy stays).
	good, err := os.ReadFile(l.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	broad := strings.Replace(string(good), `import: ["172.16.0.0/12 le 24"]`, `import: ["10.0.0.0/8 le 28", "0.0.0.0/0 le 32"]`, 1)
	if broad == string(good) {
		t.Fatal("cannot find the home router's import in the lab policy")
	}
	f, err := policy.Load("policy.yaml", []byte(broad))
	if err == nil {
		err = policy.Validate(f)
	}
	for _, want := range []string{`import "10.0.0.0/8 le 28" reaches the pod CIDR 10.244.0.0/16`, "and the default route"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("validating a broad import: %v, want an error naming %q", err, want)
		}
	}
	before := map[string]float64{}
	for _, n := range names(l) {
		before[n] = metric(t, l, n, "netd_policy_reload_errors_total", "")
	}
	tmp := l.PolicyPath + ".new"
	if err := os.WriteFile(tmp, []byte(broad), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, l.PolicyPath); err != nil {
		t.Fatal(err)
	}
	for _, n := range names(l) {
		testutil.Poll(t, 30*time.Second, n+" refuses the broad import", func() (bool, error) {
			return metric(t, l, n, "netd_policy_reload_errors_total", "") > before[n], nil
		})
	}
	noHostile("after the broad import")
}

// ipRouteDst is a prefix as iproute2 prints a route's destination.
func ipRouteDst(p string) string {
	switch {
	case p == "0.0.0.0/0":
		return "default"
	case strings.HasSuffix(p, "/32"):
		return strings.TrimSuffix(p, "/32")
	}
	return p
}
