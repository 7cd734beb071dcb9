package policy

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"

	"github.com/ducksnest/netd/policy/acldoc"
	"github.com/ducksnest/netd/policy/desired"
)

// felixMarkMask is the iptables mark mask Felix may use. Calico's default,
// 0xffff0000, overlaps tailscaled's fwmarks (0x40000 subnet route, also
// what its SNAT matches; 0x80000 bypass, on tailscaled's own packets: the
// 0x00ff0000 byte, util/linuxfw), so Felix's verdict marks would be
// read by tailscaled's rules at priorities 5210-5250 as its own and its
// packets misrouted. kube-proxy and the kubelet use 0x4000 (masquerade) and
// 0x8000 (drop). Felix wants at least 8 bits, and Calico's CRD declares the
// field int32, so the top bit cannot be used (the API server rejects
// 0xff000000). What is left: bits 24-30 and 8-11, 11 bits in all.
const felixMarkMask uint32 = 0x7f000f00

// Compile validates f and turns it into the desired state every reconciler
// consumes. It is pure: no I/O, and the same file always gives the same
// state and digest. On invalid input the error is an ErrorList. Slices in the
// state may be shared between peers: treat the state as read-only.
func Compile(f *File) (*desired.State, error) {
	m, errs := check(f)
	if err := errs.Err(); err != nil {
		return nil, err
	}
	s := &desired.State{
		Name:     f.Metadata.Name,
		Source:   f.source,
		Networks: desired.Networks{Pods: m.pods, Services: m.services, Overlay: m.overlay, LANs: m.lans},
		Overlay:  desired.Link{Interface: m.overlayIface, MTU: m.overlayMTU},
		Routing:  m.routing,
		PodMTU:   m.podMTU,
	}
	var ring reflectedRing
	s.Nodes, ring = compileNodes(f, m)
	s.Calico = desired.Calico{
		IPPools:        slices.SortedFunc(slices.Values(m.pools), func(a, b desired.IPPool) int { return cmp.Compare(a.Name, b.Name) }),
		StrictAffinity: true,
		Felix: desired.Felix{
			MTUIfacePattern:  "^" + regexp.QuoteMeta(m.overlayIface) + "$",
			VethMTU:          m.podMTU,
			IptablesMarkMask: felixMarkMask,
			// Felix's default exclusion, kube-ipvs0, is kept.
			InterfaceExclude: "kube-ipvs0," + m.overlayIface,
		},
	}
	if m.vxlan {
		s.Calico.Felix.VXLANMTU = m.podMTU
	}
	pol := m.tailnet
	t, err := compileTailnet(f, m, pol)
	if err != nil {
		return nil, err
	}
	s.Tailnet = t
	if s.Digest, err = digest(s, ring); err != nil {
		return nil, err
	}
	return s, nil
}

// digest hashes the canonical JSON of s, without Digest and Source (the
// same policy read from another path is the same state), then the rendered
// tailnet HuJSON without its header (which names the source; the HuJSON is
// left out of the JSON form of s), then every peer's import
// ranges. The ranges are the bulk of a large state (a route-reflector
// client imports every other node's blocks: O(nodes²) in all), so they are
// folded in as one binary hash per distinct list, computed once per shared
// list, instead of as JSON text; a client's window of the reflected ring is
// folded in as its offset and length, after the hash of the whole ring.
// The result depends only on the content.
func digest(s *desired.State, ring reflectedRing) (string, error) {
	c := *s
	c.Digest, c.Source = "", ""
	c.Nodes = make([]desired.Node, len(s.Nodes))
	memo := map[rangeList][sha256.Size]byte{}
	ringSum, scratch := hashRanges(memo, ring.ranges, nil)
	folded := append([]byte(nil), ringSum[:]...)
	for i, n := range s.Nodes {
		n.BGP.Peers = slices.Clone(n.BGP.Peers)
		for j := range n.BGP.Peers {
			p := &n.BGP.Peers[j]
			folded = append(folded, n.Name...)
			folded = append(folded, 0)
			folded = append(folded, p.Name...)
			folded = append(folded, 0)
			if rs := p.Import.Ranges; len(rs) > 0 && ring.windows[&rs[0]] > 0 {
				folded = append(folded, 'w')
				folded = binary.AppendUvarint(folded, uint64(ring.windows[&rs[0]]))
				folded = binary.AppendUvarint(folded, uint64(len(rs)))
			} else {
				var sum [sha256.Size]byte
				sum, scratch = hashRanges(memo, rs, scratch)
				folded = append(folded, 'h')
				folded = append(folded, sum[:]...)
			}
			p.Import.Ranges = nil
		}
		c.Nodes[i] = n
	}
	h := sha256.New()
	enc := json.NewEncoder(h)
	if err := enc.Encode(&c); err != nil {
		return "", fmt.Errorf("encoding desired state: %w", err)
	}
	// The tailnet policy as rendered (stable HuJSON), without its header
	// comment, which names the source file.
	h.Write(withoutHeader(s.Tailnet.Tailscale.HuJSON))
	h.Write(folded)
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// rangeList identifies a (possibly shared) slice of prefix ranges.
type rangeList struct {
	first *desired.PrefixRange
	n     int
}

// hashRanges hashes a list of ranges, once per distinct slice; buf is
// scratch space, returned for reuse.
func hashRanges(memo map[rangeList][sha256.Size]byte, rs []desired.PrefixRange, buf []byte) ([sha256.Size]byte, []byte) {
	var key rangeList
	if len(rs) > 0 {
		key = rangeList{&rs[0], len(rs)}
		if sum, ok := memo[key]; ok {
			return sum, buf
		}
	}
	buf = buf[:0]
	for _, r := range rs {
		a := r.Prefix.Addr()
		if a.Is4() {
			b := a.As4()
			buf = append(buf, 4, b[0], b[1], b[2], b[3])
		} else {
			b := a.As16()
			buf = append(buf, 16)
			buf = append(buf, b[:]...)
		}
		buf = append(buf, byte(r.Prefix.Bits()), byte(r.MinLen), byte(r.MaxLen))
	}
	sum := sha256.Sum256(buf)
	if len(rs) > 0 {
		memo[key] = sum
	}
	return sum, buf
}

// compileTailnet renders the tailnet policy and builds what the ACL writer
// needs from the rendered document: its headscale form and the offline
// verdict on both (acldoc.Desired).
func compileTailnet(f *File, m *model, pol acldoc.Policy) (desired.Tailnet, error) {
	// The header names the policy, not the file it was read from: the
	// daemon (/etc/netd/policy.yaml), the CLI in CI (the repository path)
	// and the lab read the same policy from different paths, and the live
	// document must not differ between them by a comment.
	header := []string{
		"Generated by netd from policy " + f.Metadata.Name + ". Do not edit:",
		"edit spec.tailnet in the policy file and run `netd policy render --tailnet` again.",
	}
	hj, err := acldoc.Render(pol, header)
	if err != nil {
		return desired.Tailnet{}, fmt.Errorf("rendering tailnet policy: %w", err)
	}
	t, err := acldoc.Desired(hj)
	if err != nil {
		return desired.Tailnet{}, fmt.Errorf("reading back the rendered tailnet policy: %w", err)
	}
	t.NodeTag = m.nodeTag
	t.Sync = m.sync
	return t, nil
}

// reflectedRing is every pod block twice over in node-name order; windows
// maps the first element of each route-reflector client's import window
// to its offset in ranges plus one.
type reflectedRing struct {
	ranges  []desired.PrefixRange
	windows map[*desired.PrefixRange]int
}

// compileNodes builds every node with its BGP speaker, sorted by name.
func compileNodes(f *File, m *model) ([]desired.Node, reflectedRing) {
	order := make([]int, len(f.Spec.Nodes))
	for i := range order {
		order[i] = i
	}
	slices.SortFunc(order, func(a, b int) int { return cmp.Compare(f.Spec.Nodes[a].Name, f.Spec.Nodes[b].Name) })

	// exact[i] accepts exactly node i's own blocks; shared by all its
	// peers. ring holds every block twice over, in node-name order, so that
	// "every block but node i's" is one window of it: the blocks of the
	// nodes after i, wrapping around to those before. A route-reflector
	// client imports that window from its reflectors; sharing it keeps a
	// 1,000-node cluster at O(nodes) memory instead of O(nodes²).
	exact := make([][]desired.PrefixRange, len(order))
	start := make([]int, len(order)) // index of node i's first block in ring
	var ring []desired.PrefixRange
	for _, i := range order {
		start[i] = len(ring)
		for _, p := range m.nodes[i].podCIDRs {
			ring = append(ring, desired.PrefixRange{Prefix: p, MinLen: p.Bits(), MaxLen: p.Bits()})
		}
		exact[i] = ring[start[i]:len(ring):len(ring)]
	}
	total := len(ring)
	ring = append(ring, ring...)
	windows := map[*desired.PrefixRange]int{}
	reflecting := f.Spec.BGP.Topology == "route-reflector"
	rr := make([]bool, len(order)) // by file index
	var reflectors []int           // file indices, in name order
	for _, n := range m.routeReflectors {
		rr[m.byName[n]] = true
	}
	for _, i := range order {
		if rr[i] {
			reflectors = append(reflectors, i)
		}
	}
	var clusterID netip.Addr
	if reflecting && len(m.routeReflectors) > 0 {
		clusterID = m.nodes[m.byName[m.routeReflectors[0]]].overlay
	}
	asn := func(i int) uint32 { return cmp.Or(m.nodes[i].asn, f.Spec.BGP.ASN) }
	reserved := m.networks().Reserved()
	external := map[string][]desired.Peer{}
	for k, e := range m.external {
		ep := f.Spec.BGP.ExternalPeers[k]
		for _, n := range e.nodes {
			external[n] = append(external[n], desired.Peer{
				Name: ep.Name, Kind: desired.PeerExternal, Address: e.addr, ASN: ep.ASN,
				ExportOwnBlocks: e.exportOwn, Export: e.export,
				Import:       desired.Import{Ranges: e.imports, MaxPrefixes: e.maxPrefix, Exceptions: e.exceptions},
				PasswordFile: e.passwdFile,
			})
		}
	}

	out := make([]desired.Node, 0, len(order))
	for _, i := range order {
		n, mn := f.Spec.Nodes[i], m.nodes[i]
		dn := desired.Node{
			Name: n.Name, Site: n.Site, Role: n.Role, OverlayAddr: mn.overlay, LANAddr: mn.lanAddr, LAN: mn.lan,
			PodCIDRs: mn.podCIDRs, Labels: maps.Clone(n.Labels),
			Tailscale: desired.NodeTailscale{Hostname: cmp.Or(n.Tailscale.Hostname, n.Name), Tags: slices.Clone(n.Tailscale.Tags)},
			BGP: desired.Speaker{
				ASN: asn(i), RouterID: mn.overlay, ListenAddr: mn.overlay, ListenPort: m.bgpPort,
				Timers: m.timers, GracefulRestart: m.gr, BFD: m.bfd, PodCIDR: m.pods, Reserved: reserved,
			},
		}
		if !f.Spec.Generate.Disabled && !slices.Contains(dn.Tailscale.Tags, m.nodeTag) {
			dn.Tailscale.Tags = append(dn.Tailscale.Tags, m.nodeTag)
		}
		self := rr[i]
		if reflecting && self {
			dn.BGP.RouteReflector, dn.BGP.ClusterID = true, clusterID
		}
		var reflected []desired.PrefixRange // a client's import from its reflectors
		if reflecting && !self {
			lo := start[i] + len(exact[i])
			hi := start[i] + total
			reflected = ring[lo:hi:hi] // capped: an append copies
			if lo < hi {
				windows[&ring[lo]] = lo + 1
			}
		}
		candidates := order
		if reflecting && !self {
			candidates = reflectors // a client peers only with the reflectors
		}
		peers := make([]desired.Peer, 0, len(candidates)+len(external[n.Name]))
		for _, j := range candidates {
			if j == i {
				continue
			}
			peer := f.Spec.Nodes[j].Name
			p := desired.Peer{
				Name: peer, Kind: desired.PeerNode, Address: m.nodes[j].overlay, ASN: asn(j),
				Site: f.Spec.Nodes[j].Site, LANAddr: m.nodes[j].lanAddr, ExportOwnBlocks: true,
				Import: desired.Import{Ranges: exact[j], MaxPrefixes: m.maxPrefixes},
			}
			switch {
			case reflecting && self && !rr[j]:
				p.RouteReflectorClient = true
			case reflecting && !self:
				p.Import.Ranges = reflected
			}
			peers = append(peers, p)
		}
		peers = append(peers, external[n.Name]...)
		slices.SortFunc(peers, func(a, b desired.Peer) int { return cmp.Compare(a.Name, b.Name) })
		dn.BGP.Peers = peers
		out = append(out, dn)
	}
	return out, reflectedRing{ring, windows}
}

// withoutHeader drops the leading comment lines of a rendered HuJSON
// document.
func withoutHeader(b []byte) []byte {
	for len(b) > 0 {
		line := b
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			line = b[:i+1]
		}
		if !bytes.HasPrefix(bytes.TrimLeft(line, " \t"), []byte("//")) {
			break
		}
		b = b[len(line):]
	}
	return b
}
