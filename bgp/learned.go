package bgp

import (
	"context"
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// pathInfo is what route selection compares, read from a path's attributes.
type pathInfo struct {
	nextHop   netip.Addr
	localPref uint32
	asPathLen int
	origin    uint32
	med       uint32
}

func readPathInfo(p *api.Path) pathInfo {
	pi := pathInfo{localPref: 100}
	for _, a := range p.Pattrs {
		switch {
		case a.MessageIs(&api.NextHopAttribute{}):
			var v api.NextHopAttribute
			if a.UnmarshalTo(&v) == nil {
				pi.nextHop, _ = netip.ParseAddr(v.NextHop)
			}
		case a.MessageIs(&api.MpReachNLRIAttribute{}):
			var v api.MpReachNLRIAttribute
			if a.UnmarshalTo(&v) == nil && len(v.NextHops) > 0 {
				pi.nextHop, _ = netip.ParseAddr(v.NextHops[0])
			}
		case a.MessageIs(&api.LocalPrefAttribute{}):
			var v api.LocalPrefAttribute
			if a.UnmarshalTo(&v) == nil {
				pi.localPref = v.LocalPref
			}
		case a.MessageIs(&api.AsPathAttribute{}):
			var v api.AsPathAttribute
			if a.UnmarshalTo(&v) == nil {
				for _, seg := range v.Segments {
					pi.asPathLen += len(seg.Numbers)
				}
			}
		case a.MessageIs(&api.OriginAttribute{}):
			var v api.OriginAttribute
			if a.UnmarshalTo(&v) == nil {
				pi.origin = v.Origin
			}
		case a.MessageIs(&api.MultiExitDiscAttribute{}):
			var v api.MultiExitDiscAttribute
			if a.UnmarshalTo(&v) == nil {
				pi.med = v.Med
			}
		}
	}
	return pi
}

// equalCost reports whether two paths tie on the attributes before the
// tie-breakers (router id, neighbor address): ECMP candidates.
func (a pathInfo) equalCost(b pathInfo) bool {
	return a.localPref == b.localPref && a.asPathLen == b.asPathLen && a.origin == b.origin && a.med == b.med
}

// readLearned lists the global RIB: for each prefix learned from peers,
// the best path and the paths of equal cost. Prefixes we originate are
// left out.
//
// Paths for which skip is true are left out: those over a peer's
// MaxPrefixes, and stale paths (kept for a restarting peer) past
// StalePathTime, which GoBGP keeps until End-of-RIB even if it never comes.
//
// only names the destinations to read (nil: all of them). report, if set,
// is given every stale path left in, and every other path left in from a
// peer in watch (held.go).
func readLearned(ctx context.Context, srv *server.BgpServer, names map[netip.Addr]string, skip func(from netip.Addr, p netip.Prefix, stale bool) bool,
	only []netip.Prefix, watch map[netip.Addr]bool, report func(seenPath)) ([]Learned, error) {
	var out []Learned
	if only != nil && len(only) == 0 {
		return nil, nil
	}
	req := &api.ListPathRequest{TableType: api.TableType_GLOBAL, Family: familyIPv4, Prefixes: lookups(only)}
	err := srv.ListPath(ctx, req, func(d *api.Destination) {
		pfx, err := netip.ParsePrefix(d.Prefix)
		if err != nil {
			return
		}
		var best *api.Path
		paths := make([]*api.Path, 0, len(d.Paths))
		for _, p := range d.Paths {
			if isLocal(p) {
				return // our own
			}
			from, err := netip.ParseAddr(p.NeighborIp)
			if p.Filtered || p.IsWithdraw || err != nil || skip(from, pfx, p.Stale) {
				continue
			}
			if report != nil && p.Stale {
				report(seenPath{pathKey: pathKey{from, pfx}, nextHop: readPathInfo(p).nextHop, stale: true})
			} else if report != nil && watch[from] {
				report(seenPath{pathKey: pathKey{from, pfx}})
			}
			paths = append(paths, p)
			if p.Best {
				best = p
			}
		}
		if best == nil && len(paths) > 0 {
			best = paths[0] // GoBGP's best was an expired stale path
		}
		if best == nil {
			return
		}
		bi := readPathInfo(best)
		l := Learned{Prefix: pfx}
		for _, p := range paths {
			pi := bi
			if p != best {
				pi = readPathInfo(p)
				if !pi.equalCost(bi) {
					continue
				}
			}
			if pi.nextHop.IsValid() && !slices.Contains(l.NextHops, pi.nextHop) {
				l.NextHops = append(l.NextHops, pi.nextHop)
			}
			from, _ := netip.ParseAddr(p.NeighborIp)
			name, ok := names[from]
			if !ok {
				name = p.NeighborIp
			}
			if !slices.Contains(l.Peers, name) {
				l.Peers = append(l.Peers, name)
			}
		}
		slices.SortFunc(l.NextHops, netip.Addr.Compare)
		slices.Sort(l.Peers)
		out = append(out, l)
	})
	slices.SortFunc(out, func(a, b Learned) int { return comparePrefix(a.Prefix, b.Prefix) })
	return out, err
}
