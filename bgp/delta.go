package bgp

import (
	"net/netip"
	"slices"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/ducksnest/netd/policy/desired"
)

// lookups are the exact-match lookups of a ListPath for the prefixes
// named (nil for none: the whole table).
func lookups(only []netip.Prefix) []*api.TableLookupPrefix {
	if only == nil {
		return nil
	}
	out := make([]*api.TableLookupPrefix, len(only))
	for i, p := range only {
		out[i] = &api.TableLookupPrefix{Prefix: p.String(), Type: api.TableLookupPrefix_EXACT}
	}
	return out
}

// limitInPlay reports whether the peer's Adj-RIB-In must be read in full
// rather than for the changed prefixes only: it was never read, or its
// MaxPrefixes may be reached (which paths are over depends on all of
// them).
func (s *Speaker) limitInPlay(p desired.Peer, changed int) bool {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	rt := st.peers[p.Address]
	if rt == nil || rt.adjIn == nil {
		return true
	}
	m := p.Import.MaxPrefixes
	return m > 0 && (rt.allowed+changed > m || len(st.over[p.Address]) > 0)
}

// classifyDelta is classifyPeer for the prefixes named in only, of which
// paths are the ones still in the peer's Adj-RIB-In; the peer's
// MaxPrefixes is not in play (limitInPlay).
func (s *Speaker) classifyDelta(cfg desired.Speaker, own []netip.Prefix, p desired.Peer, only []netip.Prefix, paths []received) {
	filter := importFilterFor(cfg, own, p)
	got := make(map[netip.Prefix]netip.Addr, len(paths))
	for _, r := range paths {
		got[r.prefix] = r.nextHop
	}
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	rt := st.peers[p.Address]
	if rt == nil || rt.adjIn == nil {
		return
	}
	for _, pfx := range only {
		old, had := rt.adjIn[pfx]
		nh, present := got[pfx]
		var why, what string
		if present {
			why, what = filter.classify(pfx, nh)
		}
		if had {
			if old == "" {
				rt.allowed--
			} else if rt.rejected[old]--; rt.rejected[old] <= 0 {
				delete(rt.rejected, old)
			}
			if old != "" && (!present || why != old) {
				delete(st.seen, rejectKey{p.Address, pfx, old})
			}
		}
		if !present {
			delete(rt.adjIn, pfx)
			continue
		}
		rt.adjIn[pfx] = why
		if why == "" {
			rt.allowed++
			continue
		}
		rt.rejected[why]++
		k := rejectKey{p.Address, pfx, why}
		if st.seen[k] {
			continue
		}
		st.seen[k] = true
		s.metrics.rejected.WithLabelValues(p.Name, why).Inc()
		if what != "" {
			s.log.Warn("bgp path rejected", "peer", p.Name, "prefix", pfx, "reason", why, "reaches", what)
		} else {
			s.log.Warn("bgp path rejected", "peer", p.Name, "prefix", pfx, "reason", why)
		}
	}
	rt.received, rt.accepted = len(rt.adjIn), rt.allowed
}

// applyLearned puts a read of the global RIB into st.learned (sorted by
// prefix): the whole of it if only is nil, else the destinations named
// (sorted), of which learned are those still learned. It reports whether
// anything changed. st.mu is held.
func (st *state) applyLearned(learned []Learned, only []netip.Prefix) bool {
	if only == nil {
		if slices.EqualFunc(learned, st.learned, equalLearned) {
			return false
		}
		st.learned = learned
		return true
	}
	if len(only) <= 32 {
		return st.patchLearned(learned, only)
	}
	// Merge: the old list without the prefixes named, plus the new ones.
	changed := false
	out := make([]Learned, 0, len(st.learned)+len(learned))
	i, j, k := 0, 0, 0 // st.learned, only, learned
	for i < len(st.learned) || k < len(learned) {
		var take Learned
		switch {
		case k == len(learned) || i < len(st.learned) && comparePrefix(st.learned[i].Prefix, learned[k].Prefix) < 0:
			take = st.learned[i]
			i++
			for j < len(only) && comparePrefix(only[j], take.Prefix) < 0 {
				j++
			}
			if j < len(only) && only[j] == take.Prefix {
				changed = true // withdrawn
				continue
			}
		case i == len(st.learned) || comparePrefix(learned[k].Prefix, st.learned[i].Prefix) < 0:
			take = learned[k]
			k++
			changed = true // new
		default: // the same prefix
			take = learned[k]
			changed = changed || !equalLearned(take, st.learned[i])
			i++
			k++
		}
		out = append(out, take)
	}
	if changed {
		st.learned = out
	}
	return changed
}

// patchLearned is applyLearned for a few prefixes: in place, without
// copying the list.
func (st *state) patchLearned(learned []Learned, only []netip.Prefix) bool {
	changed := false
	k := 0
	for _, p := range only {
		var l *Learned
		if k < len(learned) && learned[k].Prefix == p {
			l = &learned[k]
			k++
		}
		i, found := slices.BinarySearchFunc(st.learned, p, func(e Learned, p netip.Prefix) int { return comparePrefix(e.Prefix, p) })
		switch {
		case found && l == nil:
			st.learned = slices.Delete(st.learned, i, i+1)
			changed = true
		case found && !equalLearned(st.learned[i], *l):
			st.learned[i] = *l
			changed = true
		case !found && l != nil:
			st.learned = slices.Insert(st.learned, i, *l)
			changed = true
		}
	}
	return changed
}

func equalLearned(a, b Learned) bool {
	return a.Prefix == b.Prefix && slices.Equal(a.NextHops, b.NextHops) && slices.Equal(a.Peers, b.Peers)
}
