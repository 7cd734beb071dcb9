package bench

import (
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/ducksnest/netd/policy/desired"
)

// BFDTimers are the BFD timers every daemon of the run uses (netd's lab:
// 100 ms × bfd.DefaultMultiplier, what the NixOS module renders).
type BFDTimers struct {
	Interval   time.Duration
	Multiplier int
}

// birdNodeConf is BIRD's configuration equivalent to what netd runs on
// node n: the same peers (from the overlay address, multihop: the overlay
// address is a /32 and the overlay's range a device route, given to BIRD
// as a static route so that it resolves the peers' next hops), the same
// BGP timers and graceful restart, BFD with the same timers on the peers
// netd runs BFD with (noBFD lists peers without it), the node's pod blocks
// announced and the learned routes exported to the kernel table netd uses.
func birdNodeConf(n *desired.Node, overlay desired.Link, overlayNet netip.Prefix, table int, bfd BFDTimers, noBFD map[netip.Addr]bool) string {
	sp := n.BGP
	var b strings.Builder
	// Logged to stderr: the process's log file in the bench's state dir.
	fmt.Fprintf(&b, "log stderr all;\nrouter id %s;\nprotocol device {}\n", sp.RouterID)
	fmt.Fprintf(&b, "protocol kernel {\n  kernel table %d;\n  merge paths on;\n  ipv4 { import none; export where source = RTS_BGP; };\n}\n", table)
	fmt.Fprintf(&b, "protocol static overlay {\n  ipv4;\n  route %s via %q;\n}\n", overlayNet, overlay.Interface)
	b.WriteString("protocol static pods {\n  ipv4;\n")
	for _, p := range n.PodCIDRs {
		fmt.Fprintf(&b, "  route %s blackhole;\n", p)
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "protocol bfd {\n  interface \"*\" { min rx interval %d ms; min tx interval %d ms; multiplier %d; };\n}\n",
		bfd.Interval.Milliseconds(), bfd.Interval.Milliseconds(), bfd.Multiplier)
	t := sp.Timers
	for _, p := range sp.Peers {
		fmt.Fprintf(&b, "protocol bgp %s {\n", birdName(p.Name))
		fmt.Fprintf(&b, "  local %s as %d;\n  neighbor %s as %d;\n", sp.ListenAddr, sp.ASN, p.Address, p.ASN)
		fmt.Fprintf(&b, "  hold time %d;\n  keepalive time %d;\n  connect retry time %d;\n",
			secs(t.HoldTime), secs(t.Keepalive), secs(t.ConnectRetry))
		if sp.GracefulRestart.Enabled {
			fmt.Fprintf(&b, "  graceful restart on;\n  graceful restart time %d;\n", secs(sp.GracefulRestart.RestartTime))
		} else {
			b.WriteString("  graceful restart off;\n")
		}
		b.WriteString("  multihop;\n")
		if !noBFD[p.Address] {
			b.WriteString("  bfd on;\n")
		}
		export := "none"
		if p.ExportOwnBlocks {
			export = `where proto = "pods"`
		}
		fmt.Fprintf(&b, "  ipv4 { import %s; export %s; next hop self; };\n}\n", birdImport(p), export)
	}
	return b.String()
}

// birdImport is what BIRD accepts from p: everything from a node (netd
// accepts the node's blocks), the policy's ranges from an external peer.
func birdImport(p desired.Peer) string {
	if p.Kind == desired.PeerNode {
		return "all"
	}
	if len(p.Import.Ranges) == 0 {
		return "none"
	}
	var rs []string
	for _, r := range p.Import.Ranges {
		rs = append(rs, fmt.Sprintf("%s{%d,%d}", r.Prefix, r.MinLen, r.MaxLen))
	}
	return "where net ~ [ " + strings.Join(rs, ", ") + " ]"
}

// gobgpdNodeConf is gobgpd's TOML configuration equivalent to netd's on
// node n (gobgpd has no BFD and installs no kernel routes: it is the
// embedded speaker's own baseline). The pod blocks are added through its
// API after it starts (gobgpAnnounce).
func gobgpdNodeConf(n *desired.Node) string {
	sp := n.BGP
	var b strings.Builder
	fmt.Fprintf(&b, "[global.config]\n  as = %d\n  router-id = %q\n  local-address-list = [%q]\n  port = %d\n",
		sp.ASN, sp.RouterID.String(), sp.ListenAddr.String(), cmpPort(sp.ListenPort))
	t := sp.Timers
	for _, p := range sp.Peers {
		b.WriteString("[[neighbors]]\n  [neighbors.config]\n")
		fmt.Fprintf(&b, "    neighbor-address = %q\n    peer-as = %d\n", p.Address.String(), p.ASN)
		fmt.Fprintf(&b, "  [neighbors.timers.config]\n    hold-time = %d\n    keepalive-interval = %d\n    connect-retry = %d\n",
			secs(t.HoldTime), secs(t.Keepalive), secs(t.ConnectRetry))
		fmt.Fprintf(&b, "  [neighbors.transport.config]\n    local-address = %q\n", sp.ListenAddr.String())
		if p.Kind != desired.PeerNode {
			b.WriteString("  [neighbors.ebgp-multihop.config]\n    enabled = true\n    multihop-ttl = 2\n")
		}
		if sp.GracefulRestart.Enabled {
			fmt.Fprintf(&b, "  [neighbors.graceful-restart.config]\n    enabled = true\n    restart-time = %d\n", secs(sp.GracefulRestart.RestartTime))
		}
		b.WriteString("  [[neighbors.afi-safis]]\n    [neighbors.afi-safis.config]\n      afi-safi-name = \"ipv4-unicast\"\n")
		if sp.GracefulRestart.Enabled {
			b.WriteString("    [neighbors.afi-safis.mp-graceful-restart.config]\n      enabled = true\n")
		}
	}
	return b.String()
}

// senderConf is the external BIRD that announces n /24s from
// 10.128.0.0/10 to the node at peer: no BFD, no graceful restart (a stop
// withdraws everything).
func senderConf(local netip.Addr, localAS uint32, peer netip.Addr, peerAS uint32, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id %s;\nprotocol device {}\nprotocol static many {\n  ipv4;\n", local)
	for i := range n {
		fmt.Fprintf(&b, "  route 10.%d.%d.0/24 blackhole;\n", 128+i/256, i%256)
	}
	fmt.Fprintf(&b, "}\nprotocol bgp receiver {\n  local %s as %d;\n  neighbor %s as %d;\n  multihop 2;\n  graceful restart off;\n  ipv4 { import none; export where proto = \"many\"; };\n}\n",
		local, localAS, peer, peerAS)
	return b.String()
}

// installConf is a BIRD that installs n static routes into table through
// its kernel protocol, with netd's MTU and advmss, the kernel protocol
// starting disabled (enabled with birdc once the routes are in BIRD's
// table, to time the kernel install alone).
func installConf(gw netip.Addr, table, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "router id 100.64.0.98;\nprotocol device {}\nprotocol kernel k {\n  disabled;\n  kernel table %d;\n  ipv4 { import none; export filter { krt_mtu = 1280; krt_advmss = 1240; accept; }; };\n}\nprotocol static many {\n  ipv4;\n", table)
	for _, p := range installPrefixes(n) {
		fmt.Fprintf(&b, "  route %s via %s;\n", p, gw)
	}
	b.WriteString("}\n")
	return b.String()
}

// installPrefixes are the n /26 blocks of the install benchmark
// (10.0.0.0/26, 10.0.0.64/26, ...), as netd/routes' BenchmarkInstall.
func installPrefixes(n int) []netip.Prefix {
	out := make([]netip.Prefix, n)
	for i := range out {
		a := uint32(10)<<24 | uint32(i)<<6
		out[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), 26)
	}
	return out
}

func birdName(s string) string {
	return "p_" + strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			return r
		}
		return '_'
	}, s)
}

func secs(d time.Duration) int { return int(d.Round(time.Second) / time.Second) }

func cmpPort(p int) int {
	if p == 0 {
		return 179
	}
	return p
}
