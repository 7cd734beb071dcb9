package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// interopPolicy is the example policy with three external peers: BIRD
// (what Calico runs) and FRR as home routers on the LAN, and an FRR with
// bfdd on the overlay that peers with firebat only.
const interopPeers = `      - name: home-router
        address: 192.168.0.1
        asn: 64513
        export: [pods]
        import: ["172.16.0.0/16 le 24"]
        maxPrefixes: 1
      - name: home-router2
        address: 192.168.0.2
        asn: 64514
        export: [pods, services]
        import: []
      - name: edge
        address: 100.64.0.50
        asn: 64515
        nodes: [firebat]
        export: [pods]
        import: ["10.199.0.0/16 le 24"]
`

const examplePeer = `      - name: home-router
        address: 192.168.0.1
        asn: 64513
        export: [pods]
        import: []
`

const birdConf = `router id 192.168.0.1;
protocol device { scan time 10; }
# What this router announces: one prefix the policy accepts
# (172.16.1.0/24), one more over its limit of 1 (172.16.5.0/24), one too
# long for it, one outside it, and a more-specific of firebat's pod block
# (hostile).
protocol static announce {
  ipv4;
  route 172.16.1.0/24 blackhole;
  route 172.16.5.0/24 blackhole;
  route 172.16.2.0/25 blackhole;
  route 172.17.0.0/24 blackhole;
  route 10.244.1.0/25 blackhole;
}
# netd speaks BGP only from the overlay address: reach it via the LAN.
protocol static reach {
  ipv4;
  route 100.64.0.1/32 via 192.168.0.11;
  route 100.64.0.2/32 via 192.168.0.12;
  route 100.64.0.3/32 via 192.168.0.13;
}
template bgp node {
  local 192.168.0.1 as 64513;
  multihop 2;
  graceful restart on;
  ipv4 { import all; export where proto = "announce"; };
}
protocol bgp n_firebat from node { neighbor 100.64.0.1 as 64512; }
protocol bgp n_ultra from node { neighbor 100.64.0.2 as 64512; }
protocol bgp n_old from node { neighbor 100.64.0.3 as 64512; }
`

const frrHomeConf = `frr defaults traditional
hostname home-router2
log stdout
router bgp 64514
 bgp router-id 192.168.0.2
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor NODES peer-group
 neighbor NODES remote-as 64512
 neighbor NODES ebgp-multihop 2
 neighbor NODES update-source 192.168.0.2
 neighbor 100.64.0.1 peer-group NODES
 neighbor 100.64.0.2 peer-group NODES
 neighbor 100.64.0.3 peer-group NODES
 address-family ipv4 unicast
  network 172.20.0.0/24
 exit-address-family
`

const frrEdgeConf = `frr defaults traditional
hostname edge
log stdout
router bgp 64515
 bgp router-id 100.64.0.50
 no bgp ebgp-requires-policy
 no bgp network import-check
 neighbor 100.64.0.1 remote-as 64512
 neighbor 100.64.0.1 bfd
 address-family ipv4 unicast
  network 10.199.1.0/24
 exit-address-family
`

const frrEdgeBFD = `frr defaults traditional
hostname edge
log stdout
bfd
 peer 100.64.0.1 local-address 100.64.0.50
  receive-interval 100
  transmit-interval 100
  detect-multiplier 5
 !
!
`

var cidrLine = regexp.MustCompile(`(?m)^(\d+\.\d+\.\d+\.\d+/\d+)`)

// birdRoutes lists the prefixes BIRD has from one protocol.
func birdRoutes(birdc func(...string) string, proto string) []string {
	out := cidrLine.FindAllString(birdc("show", "route", "protocol", proto), -1)
	slices.Sort(out)
	return out
}

// frrRoutes lists the prefixes in FRR's BGP table learned from peer.
func frrRoutes(vtysh func(...string) string, peer string) []string {
	var v struct {
		Routes map[string][]struct {
			Peer string `json:"peerId"`
		} `json:"routes"`
	}
	if err := json.Unmarshal([]byte(vtysh("show bgp ipv4 unicast json")), &v); err != nil {
		return nil
	}
	var out []string
	for p, paths := range v.Routes {
		for _, x := range paths {
			if x.Peer == peer {
				out = append(out, p)
				break
			}
		}
	}
	slices.Sort(out)
	return out
}

func blocksOf(l *lab.Lab, node string, extra ...string) []string {
	n, _ := l.Node(node)
	out := slices.Clone(extra)
	for _, b := range n.PodCIDRs {
		out = append(out, b.String())
	}
	slices.Sort(out)
	return out
}

// kernelHas reports whether a node's netd routes include dst (as "ip
// route" prints it) with the given words in the line.
func kernelHas(t *testing.T, l *lab.Lab, node, dst string, words ...string) bool {
	lines, err := l.RouteText(t.Context(), node)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range lines {
		if strings.HasPrefix(line, dst+" ") {
			ok := true
			for _, w := range words {
				ok = ok && strings.Contains(line, w)
			}
			return ok
		}
	}
	return false
}

// TestInteropHomeRouters peers netd with a BIRD 2 and an FRR home router
// on the LAN and an FRR edge router (with bfdd) on the overlay, all
// configured through the policy's externalPeers: each receives exactly
// the pod (and for the FRR home router the service) prefixes the policy
// exports to it, and what each announces is accepted only as the policy
// allows; the rest is rejected, counted and logged once. FRR's bfdd and
// netd's BFD bring a session up, and a cut of the edge router's link
// withdraws its route within a second.
func TestInteropHomeRouters(t *testing.T) {
	t.Parallel() // see doc.go
	needBin(t, "bird", "/usr/lib/frr/bgpd")
	l := upLabWith(t, examplePolicy(t, examplePeer, interopPeers))
	ctx := t.Context()
	bird, err := l.AddRouter(ctx, "bird", lab.OnLAN, netip.MustParsePrefix("192.168.0.1/24"))
	if err != nil {
		t.Fatal(err)
	}
	frr, err := l.AddRouter(ctx, "frr", lab.OnLAN, netip.MustParsePrefix("192.168.0.2/24"))
	if err != nil {
		t.Fatal(err)
	}
	edge, err := l.AddRouter(ctx, "edge", lab.OnWAN, netip.MustParsePrefix("100.64.0.50/10"))
	if err != nil {
		t.Fatal(err)
	}
	birdc := startBIRD(t, l, bird, birdConf)
	homeVty := startFRR(t, l, frr, frrHomeConf, "")
	edgeVty := startFRR(t, l, edge, frrEdgeConf, frrEdgeBFD)

	home := map[string]string{"firebat": "100.64.0.1", "ultra": "100.64.0.2", "old": "100.64.0.3"}
	for node, addr := range home {
		want := blocksOf(l, node)
		testutil.Poll(t, 60*time.Second, "BIRD receives exactly "+node+"'s blocks", func() (bool, error) {
			return slices.Equal(birdRoutes(birdc, "n_"+node), want), nil
		})
		want = blocksOf(l, node, "10.96.0.0/12")
		testutil.Poll(t, 60*time.Second, "FRR receives exactly "+node+"'s blocks and the services", func() (bool, error) {
			return slices.Equal(frrRoutes(homeVty, addr), want), nil
		})
	}
	testutil.Poll(t, 60*time.Second, "FRR edge receives exactly firebat's blocks", func() (bool, error) {
		return slices.Equal(frrRoutes(edgeVty, "100.64.0.1"), blocksOf(l, "firebat")), nil
	})

	// Imports: from BIRD only 172.16.1.0/24, via the LAN, on every home node.
	for node := range home {
		testutil.Poll(t, 30*time.Second, node+" installs BIRD's allowed prefix", func() (bool, error) {
			return kernelHas(t, l, node, "172.16.1.0/24", "via 192.168.0.1", "dev eth0"), nil
		})
		for _, bad := range []string{"172.16.5.0/24", "172.16.2.0/25", "172.17.0.0/24", "10.244.1.0/25", "172.20.0.0/24"} {
			if kernelHas(t, l, node, bad) {
				t.Errorf("%s installed %s, which the policy does not allow", node, bad)
			}
		}
		// FRR passes on what it learned from the other nodes too (eBGP):
		// its own 172.20.0.0/24 and those are all rejected (import: []),
		// the pod blocks and services as reserved. BIRD's more-specific of
		// firebat's block is reserved too.
		testutil.Poll(t, 30*time.Second, node+" counts the rejections", func() (bool, error) {
			return metric(t, l, node, "netd_bgp_prefixes_rejected_total", `peer="home-router",reason="not_allowed"`) == 2 &&
				metric(t, l, node, "netd_bgp_prefixes_rejected_total", `peer="home-router",reason="reserved"`) == 1 &&
				metric(t, l, node, "netd_bgp_prefixes_rejected_total", `peer="home-router",reason="max_prefixes"`) == 1 &&
				metric(t, l, node, "netd_bgp_prefixes_rejected_total", `peer="home-router2",reason="not_allowed"`) >= 1, nil
		})
		if n := logCount(t, l, node, "bgp path rejected", "home-router2", "172.20.0.0/24"); n != 1 {
			t.Errorf("%s logged the rejection of FRR's 172.20.0.0/24 %d times, want once", node, n)
		}
		if n := logCount(t, l, node, "bgp path rejected", "10.244.1.0/25"); n != 1 {
			t.Errorf("%s logged the rejection of 10.244.1.0/25 %d times, want once", node, n)
		}
	}
	// The hostile more-specific does not steal firebat's traffic.
	ul, _ := l.Node("ultra")
	fb, _ := l.Node("firebat")
	if h, err := l.Path(ul.Pods[0], fb.Pods[0].Addr); err != nil || h.Kind != lab.PathLAN || h.Via != fb.LANAddr {
		t.Errorf("ultra -> firebat pod: %v %v, want the LAN via firebat", h, err)
	}
	if r, err := lab.Ping(ctx, ul.Pods[0].NS, ul.Pods[0].Addr, fb.Pods[0].Addr, 84, false, 3*time.Second); err != nil || !r.Reply {
		t.Errorf("ultra -> firebat pod: %v %v", r, err)
	}

	// BFD with FRR's bfdd: both sides up; a cut of the edge router's link
	// takes its route out of firebat's kernel within a second.
	testutil.Poll(t, 60*time.Second, "firebat installs the edge route", func() (bool, error) {
		return kernelHas(t, l, "firebat", "10.199.1.0/24", "via 100.64.0.50"), nil
	})
	testutil.Poll(t, 30*time.Second, "bfd up on both sides", func() (bool, error) {
		return metric(t, l, "firebat", "netd_bfd_session_up", `peer="100.64.0.50"`) == 1 && frrBFDUp(edgeVty, "100.64.0.1"), nil
	})
	if err := l.SetRouterLink(edge, false); err != nil {
		t.Fatal(err)
	}
	d := testutil.Poll(t, 30*time.Second, "edge route withdrawn", func() (bool, error) {
		return !kernelHas(t, l, "firebat", "10.199.1.0/24"), nil
	})
	t.Logf("FRR edge link cut -> its route gone from firebat's kernel in %v (FRR bfdd <-> netd BFD)", d)
	if d > 2*time.Second {
		t.Errorf("edge route withdrawn after %v, want about 1s", d)
	}
	if err := l.SetRouterLink(edge, true); err != nil {
		t.Fatal(err)
	}
	d = testutil.Poll(t, 90*time.Second, "edge route back", func() (bool, error) {
		return kernelHas(t, l, "firebat", "10.199.1.0/24", "via 100.64.0.50"), nil
	})
	t.Logf("edge link back -> route re-installed in %v (hold-down, then a new BGP session)", d)
	// FRR detects a frozen netd the same way.
	testutil.Poll(t, 30*time.Second, "bfd up again", func() (bool, error) { return frrBFDUp(edgeVty, "100.64.0.1"), nil })
	start := time.Now()
	if err := l.SignalNetd("firebat", syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.SignalNetd("firebat", syscall.SIGCONT) })
	testutil.Poll(t, 10*time.Second, "FRR's bfdd sees frozen netd down", func() (bool, error) { return !frrBFDUp(edgeVty, "100.64.0.1"), nil })
	t.Logf("netd frozen -> FRR bfdd down in %v", time.Since(start))
	if err := l.SignalNetd("firebat", syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
}

func frrBFDUp(vtysh func(...string) string, peer string) bool {
	var v []struct {
		Peer   string `json:"peer"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(vtysh("show bfd peers json")), &v); err != nil {
		return false
	}
	for _, p := range v {
		if p.Peer == peer {
			return p.Status == "up"
		}
	}
	return false
}

// TestInteropGoBGPCLI: with --grpc-addr, the standard gobgp CLI shows
// netd's neighbors and RIB; the API listens on loopback only, and is off
// by default.
func TestInteropGoBGPCLI(t *testing.T) {
	t.Parallel() // see doc.go
	needBin(t, "gobgp")
	l := upLab(t)
	ctx := t.Context()
	fb, _ := l.Node("firebat")
	gobgp := func(args ...string) (string, error) {
		out, err := runIn(fb.NS, append([]string{"gobgp", "-u", "127.0.0.1", "-p", "50051"}, args...)...)
		return out, err
	}
	if out, err := gobgp("neighbor"); err == nil {
		t.Fatalf("gobgp reached netd without --grpc-addr: %s", out)
	}
	if err := l.StopNetd(ctx, "firebat", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.StartNetdArgs(ctx, "firebat", "--grpc-addr", "127.0.0.1:50051"); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 60*time.Second, "firebat converged", func() (bool, error) { return blocksEverywhere(l, names(l), names(l)) })
	var nb string
	testutil.Poll(t, 60*time.Second, "gobgp neighbor shows the nodes established", func() (bool, error) {
		out, err := gobgp("neighbor")
		nb = out
		return err == nil && strings.Count(out, "Establ") == 3, nil
	})
	t.Logf("gobgp neighbor:\n%s", nb)
	for _, a := range []string{"100.64.0.2", "100.64.0.3", "100.64.0.4", "192.168.0.1"} {
		if !strings.Contains(nb, a) {
			t.Errorf("gobgp neighbor lacks %s", a)
		}
	}
	rib, err := gobgp("global", "rib")
	if err != nil {
		t.Fatalf("gobgp global rib: %v: %s", err, rib)
	}
	t.Logf("gobgp global rib:\n%s", rib)
	for _, n := range l.Nodes {
		for _, b := range n.PodCIDRs {
			if !strings.Contains(rib, b.String()) {
				t.Errorf("gobgp global rib lacks %s of %s", b, n.Name)
			}
		}
	}
	out, err := gobgp("neighbor", "100.64.0.2", "adj-out")
	if err != nil || !strings.Contains(out, "10.244.1.0/24") {
		t.Errorf("gobgp neighbor 100.64.0.2 adj-out: %v: %s", err, out)
	}
	// Loopback only: not on the overlay or LAN address.
	for _, a := range []string{fb.OverlayAddr.String(), fb.LANAddr.String()} {
		if out, err := runIn(fb.NS, "gobgp", "-u", a, "-p", "50051", "neighbor"); err == nil {
			t.Errorf("gobgp API reachable on %s: %s", a, out)
		}
	}
}

func runIn(ns string, argv ...string) (string, error) {
	out, err := execCombined("ip", append([]string{"netns", "exec", ns}, argv...)...)
	if err != nil {
		return out, fmt.Errorf("%s: %w", strings.Join(argv, " "), err)
	}
	return out, nil
}
