package localapi

import (
	"context"
	"fmt"
	"net/netip"
	"slices"

	"github.com/ducksnest/netd/policy/desired"
)

// PeerRoutes returns, for every Tailscale address of every peer, the
// subnet routes tailscaled will forward to that peer: its PrimaryRoutes and
// the non-address entries of its AllowedIPs.
func PeerRoutes(ctx context.Context, c LocalAPI) (map[netip.Addr][]netip.Prefix, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading tailscale status: %w", err)
	}
	out := map[netip.Addr][]netip.Prefix{}
	for _, p := range st.Peer {
		var routes []netip.Prefix
		for _, r := range slices.Concat(prefixes(p.PrimaryRoutes), prefixes(p.AllowedIPs)) {
			if r.IsSingleIP() && slices.Contains(p.TailscaleIPs, r.Addr()) {
				continue // the peer's own address
			}
			routes = append(routes, r.Masked())
		}
		routes = sortPrefixes(routes)
		for _, a := range p.TailscaleIPs {
			out[a] = routes
		}
	}
	return out, nil
}

// Checker tells whether Tailscale will forward a learned route to its BGP
// next hop.
type Checker struct {
	// Overlay is the tailnet range: only next hops inside it are checked
	// (a next hop on a LAN does not go through Tailscale).
	Overlay netip.Prefix
	// Routes is what PeerRoutes returned.
	Routes map[netip.Addr][]netip.Prefix
}

// Inconsistent is a learned route Tailscale would drop.
type Inconsistent struct {
	Prefix  netip.Prefix `json:"prefix"`
	NextHop netip.Addr   `json:"nextHop"`
	Reason  string       `json:"reason"`
}

// Check returns nil if traffic to p sent to nextHop will be forwarded, or
// why not.
func (c Checker) Check(p netip.Prefix, nextHop netip.Addr) *Inconsistent {
	if !c.Overlay.IsValid() || !c.Overlay.Contains(nextHop) {
		return nil
	}
	routes, ok := c.Routes[nextHop]
	if !ok {
		return &Inconsistent{Prefix: p, NextHop: nextHop, Reason: "no tailnet peer has this address"}
	}
	for _, r := range routes {
		if r.Bits() <= p.Bits() && r.Contains(p.Addr()) {
			return nil
		}
	}
	return &Inconsistent{Prefix: p, NextHop: nextHop,
		Reason: fmt.Sprintf("the tailnet peer does not carry it (its approved routes: %v): is it advertised and approved?", routes)}
}

// Filter keeps, of nextHops, those Check accepts for p, and returns the
// refused ones.
func (c Checker) Filter(p netip.Prefix, nextHops []netip.Addr) (ok []netip.Addr, bad []Inconsistent) {
	for _, nh := range nextHops {
		if in := c.Check(p, nh); in != nil {
			bad = append(bad, *in)
			continue
		}
		ok = append(ok, nh)
	}
	return ok, bad
}

// Peer is a tailnet peer found by DiscoverPeers.
type Peer struct {
	HostName string     `json:"hostName"`
	Addr     netip.Addr `json:"addr"` // first IPv4 Tailscale address
	Tags     []string   `json:"tags"`
	Online   bool       `json:"online"`
}

// DiscoverPeers lists the tailnet peers carrying tag (the policy's node
// tag), sorted by address.
func DiscoverPeers(ctx context.Context, c LocalAPI, tag string) ([]Peer, error) {
	st, err := c.Status(ctx)
	if err != nil {
		return nil, fmt.Errorf("reading tailscale status: %w", err)
	}
	var out []Peer
	for _, p := range st.Peer {
		if p.Tags == nil || !slices.Contains(p.Tags.AsSlice(), tag) {
			continue
		}
		var a netip.Addr
		for _, ip := range p.TailscaleIPs {
			if ip.Is4() {
				a = ip
				break
			}
		}
		if !a.IsValid() {
			continue
		}
		out = append(out, Peer{HostName: p.HostName, Addr: a, Tags: p.Tags.AsSlice(), Online: p.Online})
	}
	slices.SortFunc(out, func(x, y Peer) int { return x.Addr.Compare(y.Addr) })
	return out, nil
}

// BGPPeers turns discovered peers into self's BGP node peers: a peer the
// policy knows (same overlay address) keeps the policy's settings; an
// unknown one is peered like the policy's node peers (same ASN, import
// filter and exports, the first node peer being the template), or with
// self's ASN and the pod CIDR import if self has none. External peers of
// the policy are kept as they are.
func BGPPeers(self *desired.Node, found []Peer) []desired.Peer {
	var out []desired.Peer
	var tmpl *desired.Peer
	known := map[netip.Addr]desired.Peer{}
	for i, p := range self.BGP.Peers {
		if p.Kind != desired.PeerNode {
			out = append(out, p)
			continue
		}
		known[p.Address] = p
		if tmpl == nil {
			tmpl = &self.BGP.Peers[i]
		}
	}
	for _, f := range found {
		if f.Addr == self.OverlayAddr {
			continue
		}
		if p, ok := known[f.Addr]; ok {
			out = append(out, p)
			continue
		}
		p := desired.Peer{Name: f.HostName, Kind: desired.PeerNode, Address: f.Addr, ASN: self.BGP.ASN, ExportOwnBlocks: true,
			Import: desired.Import{Ranges: []desired.PrefixRange{{Prefix: self.BGP.PodCIDR, MinLen: self.BGP.PodCIDR.Bits(), MaxLen: 32}}, MaxPrefixes: 1000}}
		if tmpl != nil {
			p.ASN, p.ExportOwnBlocks, p.Export, p.Import = tmpl.ASN, tmpl.ExportOwnBlocks, slices.Clone(tmpl.Export), tmpl.Import
		}
		out = append(out, p)
	}
	slices.SortFunc(out, func(x, y desired.Peer) int {
		if x.Name < y.Name {
			return -1
		}
		if x.Name > y.Name {
			return 1
		}
		return x.Address.Compare(y.Address)
	})
	return out
}
