package bgp

import (
	"context"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"
)

// GoBGP v3's restarting-speaker logic (pkg/server/server.go, the End-of-RIB
// branch of handleFSMMessage) clears LocalRestarting for every configured
// neighbor as soon as "all" neighbors have sent End-of-RIB, and it counts
// a neighbor that has not come up yet as done (recvedAllEOR is true when
// the graceful restart capability was never received). So the first peer
// that sends End-of-RIB ends the restart for all of them: a peer that
// connects later gets an OPEN without the Restart State bit and without
// the Forwarding State bit, and, as RFC 4724 asks, drops the routes it
// kept for us. reassertRestart undoes that: while this speaker restarts,
// every peer that has not been established since is re-added with
// LocalRestarting set whenever GoBGP reports it cleared.

// reassertRestart re-adds, with the Restart State bit, each peer that has
// not yet come up in this restart but that GoBGP no longer marks as
// locally restarting. It returns the peers it re-added.
func (s *Speaker) reassertRestart(ctx context.Context) ([]netip.Addr, error) {
	if !s.lock(ctx) {
		return nil, ctx.Err()
	}
	defer s.unlock()
	if s.srv == nil || !s.restarting {
		return nil, nil
	}
	var redo []netip.Addr
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil {
			return
		}
		spec, ok := s.peers[a]
		if ok && spec.restarting && needsReassert(p, s.st.upSinceRestart(a)) {
			redo = append(redo, a)
		}
	})
	if err != nil {
		return nil, fmt.Errorf("listing peers: %w", err)
	}
	redo = s.notOpening(redo)
	for _, a := range redo {
		spec := s.peers[a]
		if err := s.deletePeer(ctx, a); err != nil {
			return redo, err
		}
		s.mutations.Add(1)
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: spec.apiPeer()}); err != nil {
			return redo, fmt.Errorf("re-adding peer %v with the restart bit: %w", a, err)
		}
		s.peers[a] = spec
		s.metrics.restartReasserted.Inc()
		s.log.Info("gobgp cleared the restart state of a peer that is not up yet; re-added it with the R-bit", "address", a)
	}
	return redo, nil
}

// notOpening drops from redo the peers with a connection being opened
// (openingConns): the next peer event checks them again. If the
// kernel's sockets cannot be listed, redo is returned whole, as before.
func (s *Speaker) notOpening(redo []netip.Addr) []netip.Addr {
	if len(redo) == 0 {
		return redo
	}
	listen := uint16(s.global.listenPort)
	if listen == 0 {
		listen = 179
	}
	ports := map[netip.Addr]uint16{}
	for _, a := range redo {
		ports[a] = uint16(s.peers[a].remotePort)
	}
	busy, err := openingConns(listen, ports)
	if err != nil {
		s.log.Warn("cannot see the connections being opened; re-adding the peers regardless", "err", err)
		return redo
	}
	kept := redo[:0]
	for _, a := range redo {
		if busy[a] {
			s.metrics.restartReassertWaits.Inc()
			s.log.Info("gobgp cleared the restart state of a peer whose connection is being opened: left alone", "address", a)
			continue
		}
		kept = append(kept, a)
	}
	return kept
}

// needsReassert reports whether peer p, configured with the Restart State
// bit, must be re-added to get it back: it has not been established since
// this speaker restarted, GoBGP no longer marks it locally restarting, and
// no session with it is being opened. A session in OpenSent or
// OpenConfirm is left alone: deleting the neighbor then closes it (with a
// Cease), and a GoBGP peer whose session with a restarting speaker fails
// before Established goes to Idle and drops every stale route it kept for
// us at once (pkg/server/server.go, the nextStateIdle branch of
// handleFSMMessage), which is exactly the loss the bit is meant to
// prevent. Such a session either comes up (the peer keeps our routes as
// stale until our End-of-RIB: GoBGP ignores a missing Restart State bit)
// or fails by itself, and the next peer event re-checks it.
func needsReassert(p *api.Peer, upSinceRestart bool) bool {
	switch p.GetState().GetSessionState() {
	case api.PeerState_ESTABLISHED, api.PeerState_OPENSENT, api.PeerState_OPENCONFIRM:
		return false
	}
	return !upSinceRestart && !p.GetGracefulRestart().GetLocalRestarting()
}

// PeerUnreachable is what a fast failure detector (BFD) calls when a
// peer stops answering. If the BGP session with the peer is still
// established, the peer may have died silently (a cut link, a frozen
// node: no TCP FIN): its paths leave Learned at once, so its routes leave
// the kernel. The session itself is left alone: resetting it would cost
// GoBGP's idle hold and a new connection (seconds) when the peer was only
// stalled, and if the peer is really gone the hold timer ends the session
// anyway. The paths come back the moment the detector reports the peer
// again (PeerReachable), or when a new session with it comes up (a peer
// whose detector does not come back is then trusted on the hold timer
// alone). If the session is already down, the peer is restarting (its TCP
// connection closed first): graceful restart keeps its routes and nothing
// changes. It reports whether the peer was cut off.
func (s *Speaker) PeerUnreachable(a netip.Addr) bool {
	return s.cut(a, true, "bgp peer unreachable while its session is up: its routes are withdrawn until it answers again (the session is kept)")
}

// PathDead cuts off a peer whose path is known dead (its detector is down
// and nothing answers on the paths its routes use), whether or not its
// session is still up: unlike PeerUnreachable it also drops the paths
// graceful restart keeps as stale for a session that went down, which
// only make sense while the peer's node still forwards. A new session, or
// PeerReachable, lifts it. It reports whether the peer was cut off.
func (s *Speaker) PathDead(a netip.Addr) bool {
	return s.cut(a, false, "bgp peer's path is dead: its routes are withdrawn until it answers again")
}

// cut cuts off a known peer not yet cut off (with onlyUp, only while its
// session is established), logs why and re-reads the learned paths. It
// reports whether the peer was cut off.
func (s *Speaker) cut(a netip.Addr, onlyUp bool, why string) bool {
	st := &s.st
	st.mu.Lock()
	rt := st.peers[a]
	cut := rt != nil && (rt.established || !onlyUp) && !st.cutOff[a]
	if cut {
		st.cutOff[a] = true
	}
	name := ""
	if rt != nil {
		name = rt.name
	}
	st.mu.Unlock()
	if !cut {
		return false
	}
	s.log.Warn(why, "peer", name, "address", a)
	s.metrics.cutOff.WithLabelValues(name).Inc()
	poke(s.refresh)
	return true
}

// sessionUp lifts the cut-off of a peer whose new session came up: it is
// reachable (watch.go calls it when a session becomes established).
func (st *state) sessionUp(a netip.Addr) {
	delete(st.cutOff, a)
}

// PeerReachable re-admits a peer cut off by PeerUnreachable (the detector
// applies its own hold-down before calling it).
func (s *Speaker) PeerReachable(a netip.Addr) {
	st := &s.st
	st.mu.Lock()
	was := st.cutOff[a]
	delete(st.cutOff, a)
	st.mu.Unlock()
	if was {
		s.log.Info("bgp peer reachable again: its routes are accepted again", "address", a)
		poke(s.refresh)
	}
}
