package policy

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ducksnest/netd/policy/desired"
)

// Private ASN ranges (RFC 6996).
func privateASN(a uint32) bool {
	return a >= 64512 && a <= 65534 || a >= 4200000000 && a <= 4294967294
}

func (v *validator) asn(path string, a uint32, what string) {
	if !privateASN(a) {
		v.errorf(path, "use a private ASN: 64512-65534 or 4200000000-4294967294", "%s %d is not a private ASN", what, a)
	}
}

func (v *validator) bgp() {
	b := v.f.Spec.BGP
	if b.ASN == 0 {
		v.errorf("spec.bgp.asn", "set asn: to a private ASN such as 64512", "bgp.asn is required")
	} else {
		v.asn("spec.bgp.asn", b.ASN, "bgp.asn")
	}
	switch b.Topology {
	case "full-mesh":
		if len(b.RouteReflectors) > 0 {
			v.errorf("spec.bgp.routeReflectors", "set topology: route-reflector, or remove routeReflectors", "bgp.routeReflectors is only used with topology route-reflector")
		}
	case "route-reflector":
		if len(b.RouteReflectors) == 0 {
			v.errorf("spec.bgp.topology", "list one or more node names (two for redundancy) under routeReflectors", "topology route-reflector needs at least one route reflector")
		}
	case "":
		v.errorf("spec.bgp.topology", "set topology: full-mesh (up to ~50 nodes) or route-reflector", "bgp.topology is required")
	default:
		v.errorf("spec.bgp.topology", "use full-mesh or route-reflector", "unknown bgp.topology %q", b.Topology)
	}
	if b.Topology == "route-reflector" && b.ASN != 0 {
		for i, n := range v.f.Spec.Nodes {
			if n.ASN != 0 && n.ASN != b.ASN {
				v.errorf(fmt.Sprintf("spec.nodes[%d].asn", i), fmt.Sprintf("remove the node's asn (or use full-mesh): route reflection needs every node in bgp.asn %d", b.ASN),
					"node %q: asn %d differs from bgp.asn %d, but route reflection works only within one AS", n.Name, n.ASN, b.ASN)
			}
		}
	}
	for i, rr := range b.RouteReflectors {
		path := joinIndex("spec.bgp.routeReflectors", i)
		if _, ok := v.m.byName[rr]; !ok {
			v.errorf(path, "name a node listed in spec.nodes", "route reflector %q is not a node", rr)
		} else if slices.Contains(b.RouteReflectors[:i], rr) {
			v.errorf(path, "list each route reflector once", "route reflector %q is listed twice", rr)
		} else {
			v.m.routeReflectors = append(v.m.routeReflectors, rr)
		}
	}
	v.m.bgpPort = DefaultBGPPort
	if b.Port != 0 || v.set("spec.bgp.port") {
		if b.Port < 1 || b.Port > 65535 {
			v.errorf("spec.bgp.port", "use a TCP port in 1-65535 (BGP's is 179)", "bgp.port %d is out of range", b.Port)
		} else {
			v.m.bgpPort = b.Port
		}
	}
	v.m.maxPrefixes = DefaultMaxPrefixes
	if b.MaxPrefixes != 0 || v.set("spec.bgp.maxPrefixes") {
		if b.MaxPrefixes < 1 {
			v.errorf("spec.bgp.maxPrefixes", "use a positive limit, or leave it out for 1000", "bgp.maxPrefixes %d must be positive", b.MaxPrefixes)
		}
		v.m.maxPrefixes = b.MaxPrefixes
	}
	v.maxPrefixesFit()
	v.timers()
	v.gracefulRestart()
	v.bfd()
	for i := range b.ExternalPeers {
		v.external(i)
	}
}

// maxPrefixesFit checks that no cluster peer sends more blocks than the
// limit, which would tear the session down.
func (v *validator) maxPrefixesFit() {
	total, most := 0, 0
	for _, n := range v.m.nodes {
		total += len(n.podCIDRs)
		most = max(most, len(n.podCIDRs))
	}
	need := most
	if v.f.Spec.BGP.Topology == "route-reflector" {
		need = total // a reflector sends every block
	}
	if v.m.maxPrefixes > 0 && need > v.m.maxPrefixes {
		v.errorf("spec.bgp.maxPrefixes", fmt.Sprintf("raise maxPrefixes to at least %d", need),
			"bgp.maxPrefixes %d is below the %d pod blocks a peer announces; sessions would be reset", v.m.maxPrefixes, need)
	}
}

func wholeSeconds(d time.Duration) bool { return d%time.Second == 0 }

func (v *validator) timers() {
	t := v.f.Spec.BGP.Timers
	const p = "spec.bgp.timers."
	hold := 9 * time.Second
	if t.HoldTime != 0 || v.set(p+"holdTime") {
		hold = t.HoldTime.D()
		switch {
		case !wholeSeconds(hold):
			v.errorf(p+"holdTime", "BGP timers are whole seconds, e.g. 9s", "bgp.timers.holdTime %s is not a whole number of seconds", hold)
		case hold != 0 && hold < 3*time.Second:
			v.errorf(p+"holdTime", "use 0s (no keepalives) or at least 3s (RFC 4271); 9s suits a cluster", "bgp.timers.holdTime %s is below 3s", hold)
		case hold > 65535*time.Second:
			v.errorf(p+"holdTime", "use at most 65535s; 9s suits a cluster", "bgp.timers.holdTime %s is too long", hold)
		}
	}
	keep := hold / 3
	if t.Keepalive != 0 || v.set(p+"keepalive") {
		keep = t.Keepalive.D()
		switch {
		case !wholeSeconds(keep):
			v.errorf(p+"keepalive", "BGP timers are whole seconds, e.g. 3s", "bgp.timers.keepalive %s is not a whole number of seconds", keep)
		case hold == 0 && keep != 0:
			v.errorf(p+"keepalive", "leave keepalive out (or 0s) when holdTime is 0s", "bgp.timers.keepalive %s is set but holdTime is 0s, which disables keepalives", keep)
		case hold != 0 && keep == 0:
			v.errorf(p+"keepalive", fmt.Sprintf("use holdTime/3, i.e. %s", hold/3), "bgp.timers.keepalive is 0s but holdTime is %s", hold)
		case hold != 0 && keep >= hold:
			v.errorf(p+"keepalive", fmt.Sprintf("use holdTime/3, i.e. %s", (hold/3).Truncate(time.Second)), "bgp.timers.keepalive %s is not below holdTime %s", keep, hold)
		}
	}
	retry := 2 * time.Second
	if t.ConnectRetry != 0 || v.set(p+"connectRetry") {
		retry = t.ConnectRetry.D()
		if !wholeSeconds(retry) || retry < time.Second || retry > 65535*time.Second {
			v.errorf(p+"connectRetry", "use whole seconds, at least 1s; 2s suits a cluster", "bgp.timers.connectRetry %s is not a whole number of seconds in 1s-65535s", retry)
		}
	}
	v.m.timers = desired.Timers{HoldTime: hold, Keepalive: keep, ConnectRetry: retry}
}

func (v *validator) gracefulRestart() {
	g := v.f.Spec.BGP.GracefulRestart
	const p = "spec.bgp.gracefulRestart."
	gr := desired.GracefulRestart{Enabled: g.Enabled == nil || *g.Enabled, RestartTime: 120 * time.Second, StalePathTime: 300 * time.Second}
	if g.RestartTime != 0 || v.set(p+"restartTime") {
		gr.RestartTime = g.RestartTime.D()
		if !wholeSeconds(gr.RestartTime) || gr.RestartTime < time.Second || gr.RestartTime > 4095*time.Second {
			v.errorf(p+"restartTime", "the restart time is a 12-bit number of seconds: use 1s-4095s, e.g. 120s", "bgp.gracefulRestart.restartTime %s is not whole seconds in 1s-4095s", gr.RestartTime)
		}
	}
	if g.StalePathTime != 0 || v.set(p+"stalePathTime") {
		gr.StalePathTime = g.StalePathTime.D()
		if !wholeSeconds(gr.StalePathTime) || gr.StalePathTime < time.Second {
			v.errorf(p+"stalePathTime", "use whole seconds, e.g. 300s", "bgp.gracefulRestart.stalePathTime %s is not a positive whole number of seconds", gr.StalePathTime)
		}
	}
	v.m.gr = gr
}

// bfd reads spec.bgp.bfd (on unless enabled: false).
func (v *validator) bfd() {
	e := v.f.Spec.BGP.BFD.Enabled
	v.m.bfd = e == nil || *e
}

func (v *validator) external(i int) {
	e := v.f.Spec.BGP.ExternalPeers[i]
	path := joinIndex("spec.bgp.externalPeers", i)
	if e.Name == "" {
		v.errorf(path+".name", "name the peer, e.g. name: home-router", "external peer %d has no name", i)
	} else if _, clash := v.m.byName[e.Name]; clash {
		v.errorf(path+".name", "peer names share a namespace with node names; rename the peer", "external peer %q has the name of a node", e.Name)
	} else {
		for _, o := range v.f.Spec.BGP.ExternalPeers[:i] {
			if o.Name == e.Name {
				v.errorf(path+".name", "give every external peer its own name", "external peer %q is listed twice", e.Name)
				break
			}
		}
	}
	mp := modelPeer{maxPrefix: v.m.maxPrefixes, passwdFile: e.Password}
	if e.ASN == 0 {
		v.errorf(path+".asn", "set the peer's ASN, e.g. asn: 64513", "external peer %q has no asn", e.Name)
	} else if e.ASN == 23456 || e.ASN == 65535 || e.ASN == 4294967295 {
		v.errorf(path+".asn", "use the peer's real ASN", "external peer %q: asn %d is reserved", e.Name, e.ASN)
	}
	addr, addrOK := v.addr(path+".address", e.Address, fmt.Sprintf("external peer %q address", e.Name), "192.168.0.1")
	mp.addr = addr
	if addrOK {
		for _, n := range v.m.nodes {
			if n.overlay == addr || n.lanAddr == addr {
				v.errorf(path+".address", "an external peer is a router outside the cluster; nodes peer with each other automatically", "external peer %q: address %s belongs to a node", e.Name, addr)
				break
			}
		}
	}
	if len(e.Nodes) > 0 {
		for j, n := range e.Nodes {
			if _, ok := v.m.byName[n]; !ok {
				v.errorf(joinIndex(path+".nodes", j), "name a node listed in spec.nodes", "external peer %q: node %q is not in spec.nodes", e.Name, n)
			} else if !slices.Contains(mp.nodes, n) {
				mp.nodes = append(mp.nodes, n)
			}
		}
	} else if addrOK {
		mp.nodes = v.lanNodes(addr)
		if len(mp.nodes) == 0 {
			v.errorf(path+".address", "list the nodes that peer with it under nodes:, or give them a lanAddress on a LAN containing "+addr.String(),
				"external peer %q: no node has a LAN address on a LAN containing %s", e.Name, addr)
		}
	}
	slices.Sort(mp.nodes)
	for j, x := range e.Export {
		jp := joinIndex(path+".export", j)
		switch x {
		case "pods":
			mp.exportOwn = true
		case "services":
			if v.m.services.IsValid() {
				mp.export = append(mp.export, v.m.services)
			}
		default:
			if p, ok := v.prefix(jp, x, fmt.Sprintf("external peer %q export", e.Name), `"pods", "services" or 10.0.0.0/8`); ok {
				mp.export = append(mp.export, p)
			}
		}
	}
	for j, x := range e.Import {
		jp := joinIndex(path+".import", j)
		if r, ok := v.importRange(jp, e.Name, x); ok && v.importOutsideReserved(jp, e.Name, x, r) {
			mp.imports = append(mp.imports, r)
		}
	}
	for j, x := range e.ImportReserved {
		if p, ok := v.importException(joinIndex(path+".importReserved", j), e.Name, x, mp.addr); ok {
			mp.exceptions = append(mp.exceptions, p)
		}
	}
	if e.MaxPrefixes != 0 || v.set(path+".maxPrefixes") {
		if e.MaxPrefixes < 1 {
			v.errorf(path+".maxPrefixes", "use a positive limit, or leave it out for bgp.maxPrefixes", "external peer %q: maxPrefixes %d must be positive", e.Name, e.MaxPrefixes)
		}
		mp.maxPrefix = e.MaxPrefixes
	}
	if e.Password != "" && !filepath.IsAbs(e.Password) {
		v.errorf(path+".passwordFile", "use an absolute path such as /run/secrets/bgp-home-router", "external peer %q: passwordFile %q is not an absolute path", e.Name, e.Password)
	}
	v.m.external = append(v.m.external, mp)
}

// lanNodes lists the nodes with a LAN address on a LAN that contains a.
func (v *validator) lanNodes(a netip.Addr) []string {
	var out []string
	for _, l := range v.m.lans {
		if !l.Prefix.Contains(a) {
			continue
		}
		for i, n := range v.m.nodes {
			if n.lan == l.Name && n.lanAddr.IsValid() {
				out = append(out, v.f.Spec.Nodes[i].Name)
			}
		}
	}
	return out
}

// importRange parses "CIDR" or "CIDR le N".
func (v *validator) importRange(path, peer, s string) (desired.PrefixRange, bool) {
	fields := strings.Fields(s)
	hint := `write a CIDR, optionally with a maximum length: "10.0.0.0/8" or "10.0.0.0/8 le 24"`
	if len(fields) != 1 && (len(fields) != 3 || fields[1] != "le") {
		v.errorf(path, hint, "external peer %q: import %q is not \"CIDR\" or \"CIDR le N\"", peer, s)
		return desired.PrefixRange{}, false
	}
	p, ok := v.prefix(path, fields[0], fmt.Sprintf("external peer %q import", peer), "10.0.0.0/8")
	if !ok {
		return desired.PrefixRange{}, false
	}
	r := desired.PrefixRange{Prefix: p, MinLen: p.Bits(), MaxLen: p.Bits()}
	if len(fields) == 3 {
		n, err := strconv.Atoi(fields[2])
		if err != nil || n < p.Bits() || n > 32 {
			v.errorf(path, fmt.Sprintf("the maximum length must be between %d and 32", p.Bits()), "external peer %q: import %q has a bad maximum length", peer, s)
			return desired.PrefixRange{}, false
		}
		r.MaxLen = n
	}
	return r, true
}
