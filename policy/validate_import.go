package policy

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/ducksnest/netd/policy/desired"
)

// networks is the model's address ranges as the desired state has them.
func (m *model) networks() desired.Networks {
	return desired.Networks{Pods: m.pods, Services: m.services, Overlay: m.overlay, LANs: m.lans}
}

// reservedName names a reserved range with its prefix ("the pod CIDR
// 10.244.0.0/16", "the default route").
func reservedName(r desired.ReservedRange) string {
	if r.Name == desired.DefaultRouteName {
		return "the " + r.Name
	}
	return "the " + r.Name + " " + r.Prefix.String()
}

// importOutsideReserved reports an import range of an external peer that
// reaches a reserved range (desired.Networks.Reserved): netd's table is
// looked up before the main table, so a route there would capture the
// cluster's traffic. It returns whether r is clear of them.
func (v *validator) importOutsideReserved(path, peer, s string, r desired.PrefixRange) bool {
	var hit []string
	for _, rr := range v.m.networks().Reserved() {
		if rr.ReachedBy(r) {
			hit = append(hit, reservedName(rr))
		}
	}
	if len(hit) == 0 {
		return true
	}
	v.errorf(path, "netd installs an external peer's routes in its own table, looked up before the main table, so such a route would capture that traffic; "+
		"import only ranges that neither cover nor lie inside it, and list an exact prefix inside one under importReserved if this peer must send it",
		"external peer %q: import %q reaches %s", peer, s, strings.Join(hit, " and "))
	return false
}

// importException parses one importReserved entry of an external peer
// (at addr): an exact CIDR strictly inside a reserved range, holding no
// node's pod block or address and not the peer's own address.
func (v *validator) importException(path, peer, s string, addr netip.Addr) (netip.Prefix, bool) {
	p, ok := v.prefix(path, s, fmt.Sprintf("external peer %q importReserved", peer), "192.168.0.128/25")
	if !ok {
		return netip.Prefix{}, false
	}
	var inside desired.ReservedRange
	for _, rr := range v.m.networks().Reserved() {
		if rr.Prefix.Bits() > 0 && rr.Prefix.Bits() < p.Bits() && rr.Prefix.Contains(p.Addr()) {
			inside = rr
		}
	}
	if !inside.Prefix.IsValid() {
		for _, rr := range v.m.networks().Reserved() {
			if rr.Reaches(p) {
				v.errorf(path, "list only prefixes strictly inside a reserved range; a route covering one would capture all of its traffic (a default route belongs in the main table)",
					"external peer %q: importReserved %q covers %s", peer, s, reservedName(rr))
				return netip.Prefix{}, false
			}
		}
		v.errorf(path, "it reaches no reserved range: list it under import", "external peer %q: importReserved %q is not inside a reserved range", peer, s)
		return netip.Prefix{}, false
	}
	clash := func(what string) (netip.Prefix, bool) {
		v.errorf(path, "choose a prefix that overlaps no node's pod block and holds no node's address nor the peer's own",
			"external peer %q: importReserved %q %s", peer, s, what)
		return netip.Prefix{}, false
	}
	for i, n := range v.m.nodes {
		name := v.f.Spec.Nodes[i].Name
		for _, b := range n.podCIDRs {
			if b.Overlaps(p) {
				return clash(fmt.Sprintf("overlaps node %s's pod block %s", name, b))
			}
		}
		for _, a := range []netip.Addr{n.overlay, n.lanAddr} {
			if a.IsValid() && p.Contains(a) {
				return clash(fmt.Sprintf("holds node %s's address %s", name, a))
			}
		}
	}
	if addr.IsValid() && p.Contains(addr) {
		return clash("holds the peer's own address " + addr.String())
	}
	return p, true
}
