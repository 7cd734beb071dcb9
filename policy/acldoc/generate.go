package acldoc

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// DefaultNodeTag is the tag of cluster nodes when GenerateInput.NodeTag is
// empty.
const DefaultNodeTag = "tag:k8s-node"

// GenerateInput is what Generate needs to know about the cluster.
type GenerateInput struct {
	NodeTag string // tag every cluster node carries (default DefaultNodeTag)
	Nodes   []GenNode
	// PodCIDR is the cluster pod range; ServiceCIDR the Service range. A
	// zero prefix skips what depends on it.
	PodCIDR, ServiceCIDR netip.Prefix
	// OverlayCIDR is the nodes' Tailscale range. Node identities are tags,
	// so it is not written into the policy; it is kept for callers and
	// future checks.
	OverlayCIDR netip.Prefix
	BGPPort     int // default 179
	// BFD is whether the nodes run BFD with their BGP peers: single-hop
	// BFD (RFC 5881), UDP 3784. netd never runs multihop BFD (RFC 5883,
	// UDP 4784), so that port is never opened.
	BFD bool
	// VXLAN is whether some Calico pool encapsulates with VXLAN (UDP 4789
	// between nodes); plain routed pools need no such grant.
	VXLAN bool
}

// GenNode is one cluster node as the generator sees it.
type GenNode struct {
	Name, Hostname, Role string // Role is "control-plane" or "worker"
	Tags                 []string
	OverlayAddr          netip.Addr
}

// Ports of the cluster services the generated grants open.
const (
	portKubelet   = 10250
	portAPIServer = 6443
	portVXLAN     = 4789
	// PortBFD is single-hop BFD's destination port (RFC 5881).
	PortBFD = 3784
)

// Generate returns base plus the entries a Tailscale-policied Kubernetes
// cluster needs to work: tag owners for the node tags, host aliases for the
// pod and Service ranges, the auto-approval of the pod range as a subnet
// route, grants for BGP, BFD (if on), the kubelet, the API server, etcd,
// VXLAN (if a pool uses it), ICMP and pod traffic, and tests that keep those flows allowed (plus deny tests
// that hold). It never changes or reorders base's entries, adds nothing
// that is already present (so Generate(Generate(p)) == Generate(p)), and
// records every addition in Policy.Generated. It does not mutate base.
func Generate(base Policy, in GenerateInput) Policy {
	p := clonePolicy(base)
	if p.Generated == nil {
		p.Generated = map[string]string{}
	}
	g := &generator{p: &p, in: in}
	if g.in.NodeTag == "" {
		g.in.NodeTag = DefaultNodeTag
	}
	if g.in.BGPPort == 0 {
		g.in.BGPPort = 179
	}
	g.identities()
	g.tagOwners()
	g.hosts()
	g.autoApprove()
	g.grants()
	g.tests()
	if len(p.Generated) == 0 {
		p.Generated = base.Generated // keep nil as nil
		if p.Generated != nil {
			p.Generated = maps.Clone(base.Generated)
		}
	}
	return p
}

type generator struct {
	p  *Policy
	in GenerateInput
	// nodes are the selectors for every node, cps for control-plane nodes.
	nodes, cps []string
	// pods and services are the selectors for the pod and Service ranges
	// ("" if the range is unknown).
	pods, services string
	// podA and podB are two sample pod addresses in different blocks, for
	// tests (Tailscale's tests name single addresses).
	podA, podB string
}

// identities works out how the policy names the nodes: a node carrying
// NodeTag (or no tag at all) is NodeTag, any other node is its own tags.
// Control-plane nodes are named by their tags other than NodeTag if they
// have such a distinct tag (e.g. tag:aws), else by NodeTag.
func (g *generator) identities() {
	nodes, cps := map[string]bool{}, map[string]bool{}
	nt := g.in.NodeTag
	for _, n := range g.in.Nodes {
		if len(n.Tags) == 0 || slices.Contains(n.Tags, nt) {
			nodes[nt] = true
		} else {
			for _, t := range n.Tags {
				nodes[t] = true
			}
		}
		if n.Role != "control-plane" {
			continue
		}
		distinct := false
		for _, t := range n.Tags {
			if t != nt {
				cps[t], distinct = true, true
			}
		}
		if !distinct {
			cps[nt] = true
		}
	}
	if len(nodes) == 0 {
		nodes[nt] = true
	}
	g.nodes = slices.Sorted(maps.Keys(nodes))
	g.cps = slices.Sorted(maps.Keys(cps))
}

func (g *generator) note(path, reason string) { g.p.Generated[path] = reason }

func (g *generator) tagOwners() {
	tags := map[string]bool{g.in.NodeTag: true}
	for _, n := range g.in.Nodes {
		for _, t := range n.Tags {
			tags[t] = true
		}
	}
	for _, t := range slices.Sorted(maps.Keys(tags)) {
		if _, ok := g.p.TagOwners[t]; ok {
			continue
		}
		if g.p.TagOwners == nil {
			g.p.TagOwners = map[string][]string{}
		}
		g.p.TagOwners[t] = []string{"autogroup:admin"}
		g.note("tagOwners"+key(t), "cluster nodes carry "+t+"; admins may assign it")
	}
}

// alias returns a hosts alias for pfx, adding the first free candidate.
// If every candidate names something else, the CIDR itself is used.
func (g *generator) alias(pfx netip.Prefix, reason string, candidates ...string) string {
	if !pfx.IsValid() {
		return ""
	}
	pfx = pfx.Masked()
	for _, c := range candidates {
		v, ok := g.p.Hosts[c]
		if !ok {
			if g.p.Hosts == nil {
				g.p.Hosts = map[string]string{}
			}
			g.p.Hosts[c] = pfx.String()
			g.note("hosts"+key(c), reason)
			return c
		}
		if have, ok := parsePrefix(v); ok && have == pfx {
			return c
		}
	}
	return pfx.String()
}

func (g *generator) hosts() {
	g.pods = g.alias(g.in.PodCIDR, "the cluster pod CIDR, used by the pod grants and tests below",
		"pods", "k8s-pods", "netd-pods")
	if g.pods != "" {
		g.podA, g.podB = sampleAddr(g.in.PodCIDR, 10), sampleAddr(g.in.PodCIDR, 266)
	}
	g.services = g.alias(g.in.ServiceCIDR,
		"the Kubernetes Service CIDR, for your own rules (Service IPs are translated on the sending node, so no grant needs it)",
		"services", "k8s-services", "netd-services")
}

// autoApprove makes the control server approve the pod blocks nodes
// advertise: Tailscale only forwards a destination inside an approved
// subnet route, so pod traffic needs it.
func (g *generator) autoApprove() {
	if !g.in.PodCIDR.IsValid() {
		return
	}
	route := g.in.PodCIDR.Masked().String()
	if g.p.AutoApprovers == nil {
		g.p.AutoApprovers = &AutoApprovers{}
	}
	aa := g.p.AutoApprovers
	have, exists := aa.Routes[route]
	for _, t := range g.nodes {
		if slices.Contains(have, t) {
			continue
		}
		if aa.Routes == nil {
			aa.Routes = map[string][]string{}
		}
		have = append(have, t)
		aa.Routes[route] = have
		if !exists {
			continue
		}
		g.note("autoApprovers.routes"+key(route)+idx(len(have)-1), t+" may advertise the pod blocks inside "+route)
	}
	if !exists && len(have) > 0 {
		g.note("autoApprovers.routes"+key(route),
			"each node advertises its own pod blocks as subnet routes; Tailscale only forwards destinations inside approved routes")
	}
}

func (g *generator) addGrant(gr Grant, reason string) {
	for _, have := range g.p.Grants {
		if slices.Equal(have.Src, gr.Src) && slices.Equal(have.Dst, gr.Dst) && slices.Equal(have.IP, gr.IP) &&
			len(have.Via) == 0 && len(have.App) == 0 {
			return
		}
	}
	g.p.Grants = append(g.p.Grants, gr)
	g.note("grants"+idx(len(g.p.Grants)-1), reason)
}

func (g *generator) grants() {
	withPods := func(s []string) []string {
		if g.pods == "" {
			return s
		}
		return append([]string{g.pods}, s...)
	}
	g.addGrant(Grant{Src: g.nodes, Dst: g.nodes, IP: []string{"tcp:" + strconv.Itoa(g.in.BGPPort)}},
		"BGP between the netd speakers: each node announces its pod blocks to its peers over the overlay")
	g.addGrant(Grant{Src: withPods(g.nodes), Dst: g.nodes, IP: []string{"tcp:" + strconv.Itoa(portKubelet)}},
		"kubelet API: the API server (logs, exec, port-forward) and metrics-server in a pod reach every kubelet")
	if len(g.cps) > 0 {
		g.addGrant(Grant{Src: withPods(g.nodes), Dst: g.cps, IP: []string{"tcp:" + strconv.Itoa(portAPIServer)}},
			"Kubernetes API server: kubelets, kube-proxy and pods (through the kubernetes Service) reach the control plane")
		g.addGrant(Grant{Src: g.cps, Dst: g.cps, IP: []string{"tcp:2379-2380"}},
			"etcd client and peer traffic among control-plane nodes")
	}
	if g.in.BFD {
		g.addGrant(Grant{Src: g.nodes, Dst: g.nodes, IP: []string{"udp:" + strconv.Itoa(PortBFD)}},
			"BFD between the netd speakers (single hop, RFC 5881; netd never runs multihop BFD on 4784): a silent peer's routes leave the kernel within a second")
	}
	if g.in.VXLAN {
		g.addGrant(Grant{Src: g.nodes, Dst: g.nodes, IP: []string{"udp:" + strconv.Itoa(portVXLAN)}},
			"VXLAN between nodes: a Calico pool encapsulates with VXLAN")
	}
	g.addGrant(Grant{Src: g.nodes, Dst: g.nodes, IP: []string{"icmp:*"}},
		"ICMP between nodes: path-MTU discovery over the 1280-byte tunnel, and ping for health checks")
	if g.pods != "" {
		g.addGrant(Grant{Src: withPods(g.nodes), Dst: []string{g.pods}, IP: []string{"*"}},
			"pod-to-pod and node-to-pod traffic across nodes; it flows because every node's pod blocks are auto-approved subnet routes")
	}
}

func (g *generator) addTest(t Test, reason string) {
	for _, have := range g.p.Tests {
		if have.Src == t.Src && have.Proto == t.Proto && slices.Equal(have.Accept, t.Accept) && slices.Equal(have.Deny, t.Deny) {
			return
		}
	}
	g.p.Tests = append(g.p.Tests, t)
	g.note("tests"+idx(len(g.p.Tests)-1), reason)
}

func hostPort(host string, port int) string { return host + ":" + strconv.Itoa(port) }

func (g *generator) tests() {
	for _, n := range g.nodes {
		var acc []string
		for _, d := range g.nodes {
			acc = append(acc, hostPort(d, g.in.BGPPort), hostPort(d, portKubelet))
		}
		for _, c := range g.cps {
			acc = append(acc, hostPort(c, portAPIServer))
		}
		if g.pods != "" {
			acc = append(acc, hostPort(g.podB, 8080))
		}
		g.addTest(Test{Src: n, Accept: acc}, "nodes keep reaching BGP, the kubelets, the API server and pods")
		var udp []string
		var what []string
		if g.in.BFD {
			what = append(what, "BFD")
			for _, d := range g.nodes {
				udp = append(udp, hostPort(d, PortBFD))
			}
		}
		if g.in.VXLAN {
			what = append(what, "VXLAN")
			for _, d := range g.nodes {
				udp = append(udp, hostPort(d, portVXLAN))
			}
		}
		if len(udp) > 0 {
			g.addTest(Test{Src: n, Proto: "udp", Accept: udp}, "nodes keep reaching each other's "+strings.Join(what, " and ")+" port")
		}
	}
	for _, c := range g.cps {
		var acc []string
		for _, d := range g.cps {
			acc = append(acc, hostPort(d, 2379), hostPort(d, 2380))
		}
		g.addTest(Test{Src: c, Accept: acc}, "control-plane nodes keep reaching etcd")
	}
	if g.pods != "" {
		acc := []string{hostPort(g.podB, 443)}
		for _, c := range g.cps {
			acc = append(acc, hostPort(c, portAPIServer))
		}
		g.addTest(Test{Src: g.podA, Accept: acc}, "a pod keeps reaching a pod on another node and the API server")
		g.addTest(Test{Src: g.podA, Proto: "udp", Accept: []string{hostPort(g.podB, 53)}},
			"a pod keeps reaching cluster DNS in a pod on another node")
	}
	g.denyTests()
}

// denyTests adds deny assertions that hold for the policy as generated:
// pods cannot reach etcd, and the first group of users cannot reach the
// kubelets or etcd. A candidate the user's own rules allow is left out,
// since Tailscale rejects a policy whose tests fail.
func (g *generator) denyTests() {
	ev := newEvaluator(g.p)
	holds := func(src string, dsts []string) []string {
		var out []string
		for _, d := range dsts {
			t := Test{Src: src, Deny: []string{d}}
			if rs := ev.runTest(0, t); len(rs) == 1 && rs[0].OK {
				out = append(out, d)
			}
		}
		return out
	}
	var etcd []string
	for _, c := range g.cps {
		etcd = append(etcd, hostPort(c, 2379))
	}
	if g.pods != "" {
		if d := holds(g.podA, etcd); len(d) > 0 {
			g.addTest(Test{Src: g.podA, Deny: d}, "pods must not reach etcd directly")
		}
	}
	if len(g.p.Groups) == 0 {
		return
	}
	grp := slices.Sorted(maps.Keys(g.p.Groups))[0]
	var cand []string
	for _, n := range g.nodes {
		cand = append(cand, hostPort(n, portKubelet))
	}
	cand = append(cand, etcd...)
	if d := holds(grp, cand); len(d) > 0 {
		g.addTest(Test{Src: grp, Deny: d}, fmt.Sprintf("%s (people, not nodes) must not reach the kubelets or etcd", grp))
	}
}

// sampleAddr returns the address off past the start of p, or the first
// address after it if p is too small.
func sampleAddr(p netip.Prefix, off uint64) string {
	b := p.Masked().Addr().As16()
	carry := off
	for i := 15; i >= 0 && carry > 0; i-- {
		sum := uint64(b[i]) + carry&0xff
		b[i] = byte(sum)
		carry = carry>>8 + sum>>8
	}
	a := netip.AddrFrom16(b)
	if p.Addr().Is4() {
		a = a.Unmap()
	}
	if carry != 0 || !p.Contains(a) {
		a = p.Masked().Addr().Next()
	}
	return a.String()
}

// clonePolicy deep-copies p.
func clonePolicy(p Policy) Policy {
	out := Policy{
		Groups:    cloneMap(p.Groups),
		TagOwners: cloneMap(p.TagOwners),
		Hosts:     maps.Clone(p.Hosts),
		Generated: maps.Clone(p.Generated),
	}
	for _, g := range p.Grants {
		out.Grants = append(out.Grants, Grant{
			Src: slices.Clone(g.Src), Dst: slices.Clone(g.Dst), IP: slices.Clone(g.IP),
			App: cloneAny(g.App), Via: slices.Clone(g.Via),
		})
	}
	for _, a := range p.ACLs {
		a.Src, a.Dst = slices.Clone(a.Src), slices.Clone(a.Dst)
		out.ACLs = append(out.ACLs, a)
	}
	for _, r := range p.SSH {
		r.Src, r.Dst, r.Users = slices.Clone(r.Src), slices.Clone(r.Dst), slices.Clone(r.Users)
		out.SSH = append(out.SSH, r)
	}
	for _, t := range p.Tests {
		t.Accept, t.Deny = slices.Clone(t.Accept), slices.Clone(t.Deny)
		out.Tests = append(out.Tests, t)
	}
	for _, t := range p.SSHTests {
		t.Dst, t.Accept, t.Check, t.Deny = slices.Clone(t.Dst), slices.Clone(t.Accept), slices.Clone(t.Check), slices.Clone(t.Deny)
		out.SSHTests = append(out.SSHTests, t)
	}
	if p.AutoApprovers != nil {
		out.AutoApprovers = &AutoApprovers{Routes: cloneMap(p.AutoApprovers.Routes), ExitNode: slices.Clone(p.AutoApprovers.ExitNode)}
	}
	return out
}

func cloneMap(m map[string][]string) map[string][]string {
	if m == nil {
		return nil
	}
	out := make(map[string][]string, len(m))
	for k, v := range m {
		out[k] = slices.Clone(v)
	}
	return out
}

// cloneAny deep-copies JSON-shaped values (maps, slices, scalars).
func cloneAny(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = cloneValue(v)
	}
	return out
}

func cloneValue(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return cloneAny(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = cloneValue(e)
		}
		return out
	}
	return v
}
