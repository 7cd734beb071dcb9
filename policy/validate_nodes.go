package policy

import (
	"cmp"
	"fmt"
	"maps"
	"net/netip"
	"regexp"
	"slices"
	"strings"

	"github.com/ducksnest/netd/policy/desired"
)

var dns1123Subdomain = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)

func (v *validator) nodes() {
	overlays := map[netip.Addr]string{}
	lanAddrs := map[netip.Addr]string{}
	for i, n := range v.f.Spec.Nodes {
		path := joinIndex("spec.nodes", i)
		mn := modelNode{asn: n.ASN}
		switch msg, hint, ok := checkDNSLabel(n.Name); {
		case n.Name == "":
			v.errorf(path+".name", "set name: to the Kubernetes node name", "node %d has no name", i)
		case !ok:
			v.errorf(path+".name", hint, "node name %q %s", n.Name, msg)
		default:
			if _, dup := v.m.byName[n.Name]; dup {
				v.errorf(path+".name", "give every node its own name", "node %q is listed twice", n.Name)
			} else {
				v.m.byName[n.Name] = i
			}
		}
		if n.Site == "" {
			v.errorf(path+".site", "set site: to where the node runs, e.g. home or aws", "node %q has no site", n.Name)
		}
		if n.Role != "control-plane" && n.Role != "worker" {
			v.errorf(path+".role", "set role: worker or role: control-plane", "node %q: role %q is not control-plane or worker", n.Name, n.Role)
		}
		if a, ok := v.addr(path+".overlayAddress", n.OverlayAddress, fmt.Sprintf("node %q overlayAddress", n.Name), "100.64.0.1"); ok {
			mn.overlay = a
			if v.m.overlay.IsValid() && !v.m.overlay.Contains(a) {
				v.errorf(path+".overlayAddress", fmt.Sprintf("use the node's Tailscale address (tailscale ip -4), which lies in %s", v.m.overlay),
					"node %q: overlayAddress %s is outside networks.overlay %s", n.Name, a, v.m.overlay)
			}
			if other, dup := overlays[a]; dup {
				v.errorf(path+".overlayAddress", "every node has its own overlay address", "node %q: overlayAddress %s is also node %q's", n.Name, a, other)
			}
			overlays[a] = n.Name
		}
		if n.LANAddress != "" {
			v.nodeLAN(path, n, &mn, lanAddrs)
		}
		if h := n.Tailscale.Hostname; h != "" {
			if msg, hint, ok := checkDNSLabel(h); !ok {
				v.errorf(path+".tailscale.hostname", hint, "node %q: tailscale.hostname %q %s", n.Name, h, msg)
			}
		}
		for j, t := range n.Tailscale.Tags {
			if !validTag(t) {
				v.errorf(joinIndex(path+".tailscale.tags", j), "Tailscale tags look like tag:k8s-node", "node %q: tag %q does not start with \"tag:\"", n.Name, t)
			}
		}
		if n.ASN != 0 {
			v.asn(path+".asn", n.ASN, fmt.Sprintf("node %q asn", n.Name))
		}
		mn.labels = make(map[string]string, len(n.Labels)+1)
		maps.Copy(mn.labels, n.Labels)
		if _, ok := mn.labels[hostnameLabel]; !ok {
			mn.labels[hostnameLabel] = n.Name
		}
		v.m.nodes = append(v.m.nodes, mn)
	}
}

func (v *validator) nodeLAN(path string, n Node, mn *modelNode, seen map[netip.Addr]string) {
	a, ok := v.addr(path+".lanAddress", n.LANAddress, fmt.Sprintf("node %q lanAddress", n.Name), "192.168.0.11")
	if !ok {
		return
	}
	var siteLANs []string
	for _, l := range v.m.lans {
		if l.Site != n.Site {
			continue
		}
		siteLANs = append(siteLANs, fmt.Sprintf("%s %s", l.Name, l.Prefix))
		if l.Prefix.Contains(a) {
			mn.lanAddr, mn.lan = a, l.Name
			break
		}
	}
	switch {
	case len(siteLANs) == 0 && v.lanParseFailed(n.Site):
		return // the LAN's own error is reported
	case len(siteLANs) == 0:
		v.errorf(path+".lanAddress", fmt.Sprintf("add a LAN with site: %s to networks.lans, or remove lanAddress", n.Site),
			"node %q has a lanAddress but site %q has no LAN", n.Name, n.Site)
		return
	case !mn.lanAddr.IsValid():
		v.errorf(path+".lanAddress", "use the node's address on its site's LAN: "+strings.Join(siteLANs, ", "),
			"node %q: lanAddress %s is outside the LAN of site %q", n.Name, a, n.Site)
		return
	}
	for _, l := range v.m.lans {
		if l.Name == mn.lan && l.Prefix.Bits() < 31 && (a == l.Prefix.Addr() || a == lastAddr(l.Prefix)) {
			v.errorf(path+".lanAddress", "use the node's own address on the LAN", "node %q: lanAddress %s is the network or broadcast address of %s", n.Name, a, l.Prefix)
		}
	}
	if other, dup := seen[a]; dup {
		v.errorf(path+".lanAddress", "every node has its own LAN address", "node %q: lanAddress %s is also node %q's", n.Name, a, other)
	}
	seen[a] = n.Name
}

// lanParseFailed reports whether a LAN of site exists in the file but did
// not parse (so its error is already reported).
func (v *validator) lanParseFailed(site string) bool {
	for _, l := range v.f.Spec.Networks.LANs {
		if l.Site == site {
			return true
		}
	}
	return false
}

func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	x := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3]) | host
	return netip.AddrFrom4([4]byte{byte(x >> 24), byte(x >> 16), byte(x >> 8), byte(x)})
}

func (v *validator) pools() {
	pools := v.f.Spec.Calico.IPPools
	if len(pools) == 0 {
		v.errorf("spec.calico.ipPools", "add at least one pool, e.g. cidr: 10.244.0.0/16", "calico.ipPools is empty")
		return
	}
	names := map[string]bool{}
	maxOverhead, enabled := 0, 0
	for i, p := range pools {
		path := joinIndex("spec.calico.ipPools", i)
		switch {
		case p.Name == "":
			v.errorf(path+".name", "name the pool, e.g. name: default-ipv4", "IP pool %d has no name", i)
		case !dns1123Subdomain.MatchString(p.Name) || len(p.Name) > 253:
			v.errorf(path+".name", "use lower-case letters, digits, '-' and '.'", "IP pool name %q is not a valid Kubernetes name", p.Name)
		case names[p.Name]:
			v.errorf(path+".name", "give every pool its own name", "IP pool %q is listed twice", p.Name)
		}
		names[p.Name] = true
		dp := desired.IPPool{Name: p.Name, NodeSelector: p.NodeSelector, NATOutgoing: p.NATOutgoing,
			Encapsulation: p.Encapsulation, Disabled: p.Disabled, BlockSize: p.BlockSize, Nodes: []string{}}
		if dp.NodeSelector == "" {
			dp.NodeSelector = "all()"
		}
		if dp.Encapsulation == "" {
			dp.Encapsulation = "None"
		}
		if dp.BlockSize == 0 {
			dp.BlockSize = DefaultBlockSize
		}
		ov, known := encapOverhead[p.Encapsulation]
		switch {
		case strings.EqualFold(p.Encapsulation, "IPIP") || strings.HasPrefix(strings.ToUpper(p.Encapsulation), "IPIP"):
			v.errorf(path+".encapsulation", "IPIP over tailscale0 is broken; use None (plain routing) or VXLAN", "IP pool %q: encapsulation %s is not supported", p.Name, p.Encapsulation)
		case !known:
			v.errorf(path+".encapsulation", "use None, VXLAN or VXLANCrossSubnet", "IP pool %q: unknown encapsulation %q", p.Name, p.Encapsulation)
		case !p.Disabled:
			maxOverhead = max(maxOverhead, ov)
			v.m.vxlan = v.m.vxlan || ov > 0
		}
		if known && ov > 0 && v.m.vxlanPool < 0 {
			v.m.vxlanPool = i
		}
		if !p.Disabled {
			enabled++
		}
		cidr, ok := v.prefix(path+".cidr", p.CIDR, fmt.Sprintf("IP pool %q cidr", p.Name), "10.244.0.0/16")
		if ok {
			dp.CIDR = cidr
			if v.m.pods.IsValid() && !(cidr.Bits() >= v.m.pods.Bits() && v.m.pods.Contains(cidr.Addr())) {
				v.errorf(path+".cidr", fmt.Sprintf("pools must lie inside networks.pods %s", v.m.pods), "IP pool %q: %s is outside the pod CIDR", p.Name, cidr)
			}
			for _, q := range v.m.pools {
				if q.CIDR.IsValid() && q.CIDR.Overlaps(cidr) {
					v.errorf(path+".cidr", "pools must not overlap; split the range between them", "IP pool %q: %s overlaps pool %q %s", p.Name, cidr, q.Name, q.CIDR)
				}
			}
		}
		broken := false
		switch {
		case dp.BlockSize < 20 || dp.BlockSize > 32:
			broken = true
			v.errorf(path+".blockSize", "use a block prefix length in 20-32; 26 (64 addresses) is Calico's default", "IP pool %q: blockSize %d is out of range", p.Name, p.BlockSize)
		case ok && dp.BlockSize < cidr.Bits():
			broken = true
			v.errorf(path+".blockSize", fmt.Sprintf("use a blockSize of at least %d, the pool's prefix length", cidr.Bits()), "IP pool %q: blocks of /%d are bigger than the pool %s", p.Name, dp.BlockSize, cidr)
		}
		sel, err := ParseSelector(p.NodeSelector)
		if err != nil {
			broken = true
			v.errorf(path+".nodeSelector", "write a Calico selector such as all(), has(k), k == 'v', k in {'a', 'b'}, joined with && || ! ( )",
				"IP pool %q: nodeSelector %q: %v", p.Name, p.NodeSelector, err)
		} else {
			for j, n := range v.f.Spec.Nodes {
				if j < len(v.m.nodes) && sel.Matches(v.m.nodes[j].labels) {
					dp.Nodes = append(dp.Nodes, n.Name)
				}
			}
			slices.Sort(dp.Nodes)
			if len(dp.Nodes) == 0 && len(v.f.Spec.Nodes) > 0 {
				broken = true
				v.errorf(path+".nodeSelector", "check the label names and values against nodes[].labels (each node also has kubernetes.io/hostname: <name>)",
					"IP pool %q: nodeSelector %q matches no node", p.Name, p.NodeSelector)
			}
		}
		v.m.pools = append(v.m.pools, dp)
		v.m.poolBroken = append(v.m.poolBroken, broken)
	}
	if enabled == 0 {
		v.errorf("spec.calico.ipPools", "enable at least one pool (remove disabled: true)", "every IP pool is disabled, so pods get no addresses")
	}
	v.m.podMTU = v.m.overlayMTU - maxOverhead
	if v.m.overlayMTU >= 1280 && v.m.podMTU < minPodMTU {
		v.errorf("spec.overlay.mtu", "use encapsulation None (plain routing works over Tailscale) or a larger overlay MTU",
			"pod MTU would be %d (overlay %d - encapsulation %d), below %d", v.m.podMTU, v.m.overlayMTU, maxOverhead, minPodMTU)
	}
}

type ownedBlock struct {
	p    netip.Prefix
	node string
	path string
}

func (v *validator) nodePodCIDRs() {
	var blocks []ownedBlock
	for i, n := range v.f.Spec.Nodes {
		for j, s := range n.PodCIDRs {
			path := joinIndex(joinIndex("spec.nodes", i)+".podCIDRs", j)
			p, ok := v.prefix(path, s, fmt.Sprintf("node %q podCIDR", n.Name), "10.244.1.0/24")
			if !ok {
				continue
			}
			if v.m.pods.IsValid() && !(p.Bits() >= v.m.pods.Bits() && v.m.pods.Contains(p.Addr())) {
				v.errorf(path, fmt.Sprintf("pick a block inside networks.pods %s", v.m.pods), "node %q: podCIDR %s is outside the pod CIDR", n.Name, p)
			} else if i < len(v.m.nodes) {
				v.podCIDRPool(path, n.Name, v.m.nodes[i].labels, p)
			}
			blocks = append(blocks, ownedBlock{p, n.Name, path})
			if i < len(v.m.nodes) {
				v.m.nodes[i].podCIDRs = append(v.m.nodes[i].podCIDRs, p)
			}
		}
	}
	// Canonical prefixes overlap only by containment: after sorting by
	// start, each block either lies in the widest block seen so far or
	// starts past its end.
	slices.SortFunc(blocks, func(a, b ownedBlock) int {
		return cmp.Or(a.p.Addr().Compare(b.p.Addr()), cmp.Compare(a.p.Bits(), b.p.Bits()), strings.Compare(a.path, b.path))
	})
	var cur *ownedBlock
	for i := range blocks {
		b := &blocks[i]
		if cur != nil && cur.p.Contains(b.p.Addr()) {
			whose := fmt.Sprintf("node %q's %s", cur.node, cur.p)
			if cur.node == b.node {
				whose = "its own " + cur.p.String()
			}
			v.errorf(b.path, "give every node disjoint pod blocks", "node %q: podCIDR %s overlaps %s", b.node, b.p, whose)
			if lastAddr(b.p).Compare(lastAddr(cur.p)) <= 0 {
				continue
			}
		}
		cur = b
	}
}

// podCIDRPool checks that a static block lies in a pool that may serve the node.
func (v *validator) podCIDRPool(path, node string, labels map[string]string, p netip.Prefix) {
	var in []desired.IPPool
	for i, pool := range v.m.pools {
		if pool.CIDR.IsValid() && pool.CIDR.Bits() <= p.Bits() && pool.CIDR.Contains(p.Addr()) {
			if v.m.poolBroken[i] {
				return // the pool's own error is reported
			}
			in = append(in, pool)
		}
	}
	if len(in) == 0 {
		if len(v.m.pools) > 0 {
			v.errorf(path, "pick a block inside one of calico.ipPools, or add a pool containing it", "node %q: podCIDR %s is in no IP pool", node, p)
		}
		return
	}
	for _, pool := range in {
		if slices.Contains(pool.Nodes, node) {
			if p.Bits() > pool.BlockSize {
				v.errorf(path, fmt.Sprintf("use whole blocks: a prefix length of %d or less", pool.BlockSize),
					"node %q: podCIDR %s is smaller than a block (/%d) of pool %q", node, p, pool.BlockSize, pool.Name)
			}
			return
		}
	}
	v.errorf(path, fmt.Sprintf("change the pool's nodeSelector %q to match the node, or move the block to a pool that does", in[0].NodeSelector),
		"node %q: podCIDR %s is in pool %q, whose nodeSelector does not match the node", node, p, in[0].Name)
}
