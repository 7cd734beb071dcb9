package bgp

// The GoBGP event watch: peer state changes, End-of-RIB and table events
// update the state and poke the goroutine that re-reads the RIBs
// (refresh.go): in full, or only the prefixes the events named.

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// watch subscribes to GoBGP's peer, End-of-RIB and table events and starts
// the goroutine that re-reads the RIBs when poked. done is closed when it
// has exited after ctx is cancelled.
func (s *Speaker) watch(ctx context.Context, srv *server.BgpServer, done chan struct{}) error {
	err := srv.WatchEvent(ctx, &api.WatchEventRequest{
		Peer: &api.WatchEventRequest_Peer{},
		Table: &api.WatchEventRequest_Table{Filters: []*api.WatchEventRequest_Table_Filter{
			{Type: api.WatchEventRequest_Table_Filter_BEST, Init: true},
			{Type: api.WatchEventRequest_Table_Filter_ADJIN, Init: true},
			{Type: api.WatchEventRequest_Table_Filter_EOR},
		}},
	}, s.onEvent)
	if err != nil {
		return fmt.Errorf("watching bgp events: %w", err)
	}
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-s.refresh:
				s.takeDirty() // read in full below
				s.refreshNow(ctx, srv, nil)
			case <-s.st.delta:
				only := s.takeDirty()
				if len(only) == 0 {
					continue
				}
				s.refreshNow(ctx, srv, only)
			}
			if s.restartActive.Load() {
				if _, err := s.reassertRestart(ctx); err != nil && ctx.Err() == nil {
					s.log.Warn("re-asserting the graceful restart bit", "err", err)
				}
			}
		}
	}()
	return nil
}

func (s *Speaker) onEvent(r *api.WatchEventResponse) {
	if pe := r.GetPeer(); pe != nil {
		if pe.Type != api.WatchEventResponse_PeerEvent_STATE {
			return
		}
		a, err := netip.ParseAddr(pe.GetPeer().GetState().GetNeighborAddress())
		if err != nil {
			return
		}
		if s.stateSeen(a, pe.GetPeer().GetState().GetSessionState()) {
			s.peerDropped(a) // rejoin.go: cut GoBGP's idle hold
		}
		up := pe.GetPeer().GetState().GetSessionState() == api.PeerState_ESTABLISHED
		st := &s.st
		st.mu.Lock()
		rt := st.peers[a]
		changed := rt != nil && rt.established != up
		var name string
		if changed {
			name = rt.name
			rt.established, rt.since, rt.eor, rt.eorPending = up, time.Now(), false, false
			if up {
				rt.grKnown = false // read again; kept while down (its restart time)
			}
			if !up {
				rt.lastErr = "session went down"
			} else {
				rt.lastErr, rt.everUp = "", true
				st.sessionUp(a) // restart.go: a new session lifts a cut-off
			}
		}
		st.mu.Unlock()
		if changed {
			s.log.Info("bgp session state changed", "peer", name, "address", a, "established", up)
			if spt := st.stalePathTime(); up && spt > 0 {
				// Stale paths without End-of-RIB expire then.
				time.AfterFunc(spt, func() { poke(s.refresh) })
			}
		}
		poke(s.refresh)
		poke(s.changes)
		return
	}
	eor := false
	s.st.mu.Lock()
	for _, p := range r.GetTable().GetPaths() {
		if p.Nlri != nil {
			if pfx, ok := pathPrefix(p); ok {
				s.st.dirty[pfx] = struct{}{}
			} else {
				eor = true // not an IPv4 prefix: read everything
			}
			continue
		}
		// End-of-RIB: read everything the peer sent before it.
		eor = true
		if a, err := netip.ParseAddr(p.NeighborIp); err == nil {
			if rt := s.st.peers[a]; rt != nil && rt.established {
				rt.eorPending = true
			}
		}
	}
	s.st.mu.Unlock()
	if eor {
		poke(s.refresh)
	} else {
		poke(s.st.delta)
	}
}

// pathPrefix is the IPv4 prefix of a path's NLRI.
func pathPrefix(p *api.Path) (netip.Prefix, bool) {
	var n api.IPAddressPrefix
	if p.Family.GetAfi() != api.Family_AFI_IP || p.Nlri.UnmarshalTo(&n) != nil {
		return netip.Prefix{}, false
	}
	a, err := netip.ParseAddr(n.Prefix)
	if err != nil || !a.Is4() {
		return netip.Prefix{}, false
	}
	pfx, err := a.Prefix(int(n.PrefixLen))
	return pfx, err == nil
}

// takeDirty returns and clears the prefixes named by table events.
func (s *Speaker) takeDirty() []netip.Prefix {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if len(st.dirty) == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, len(st.dirty))
	for p := range st.dirty {
		out = append(out, p)
	}
	st.dirty = map[netip.Prefix]struct{}{} // a new map: a burst's buckets are not kept
	slices.SortFunc(out, comparePrefix)
	return out
}
