package bgp

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	api "github.com/osrg/gobgp/v3/api"

	"github.com/ducksnest/netd/policy/desired"
)

// sameButRestart reports whether a and b differ only in what depends on
// restarting.
func sameButRestart(a, b peerSpec) bool {
	a.restarting, a.passive = b.restarting, b.passive
	return a == b
}

// livePeer is what GoBGP says of a configured neighbor.
type livePeer struct {
	established bool
	// holding: the session is down and GoBGP keeps the peer's paths as
	// stale (graceful restart), until the peer is back and sends
	// End-of-RIB or its restart time runs out.
	holding bool
	// opening: a session is in OpenSent or OpenConfirm. Closing it (a
	// delete) would make a GoBGP peer that keeps our paths as stale drop
	// them (see needsReassert).
	opening bool
}

// reconcilePeers makes GoBGP's neighbors match cfg.
//
// A change of a peer's session settings means deleting and adding the
// neighbor (GoBGP negotiates them in the OPEN), and GoBGP's DeletePeer
// drops every path of the peer, the stale ones it holds for a restarting
// peer included. So a neighbor is never re-added while GoBGP holds stale
// paths for it: a change waits until the peer is back (or its restart
// time has passed). A change that concerns only this speaker's own
// restart (the Restart State bit, and dialling or waiting for external
// peers) is applied only when it costs nothing: never to an established
// session (the bit matters only in the OPEN) nor to one being opened (see
// needsReassert), and to a down one only if GoBGP holds nothing for it. (GoBGP's UpdatePeer cannot apply it either:
// LocalRestarting is state it does not update, and PassiveMode is
// transport config, which it applies by delete and add.)
func (s *Speaker) reconcilePeers(ctx context.Context, cfg desired.Speaker) error {
	live := map[netip.Addr]livePeer{}
	if err := s.srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		if a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress()); err == nil {
			ss := p.GetState().GetSessionState()
			up := ss == api.PeerState_ESTABLISHED
			live[a] = livePeer{
				established: up,
				holding:     !up && p.GetGracefulRestart().GetPeerRestarting(),
				opening:     ss == api.PeerState_OPENSENT || ss == api.PeerState_OPENCONFIRM,
			}
		}
	}); err != nil {
		return fmt.Errorf("listing peers: %w", err)
	}
	var errs []error
	want := map[netip.Addr]bool{}
	for _, p := range cfg.Peers {
		want[p.Address] = true
		spec, err := s.peerSpecFor(cfg, p)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		lp, running := live[p.Address]
		old, known := s.peers[p.Address]
		if running && known {
			switch {
			case old == spec:
				continue
			case sameButRestart(old, spec) && (lp.established || lp.holding || lp.opening):
				continue // a restart-time session stays until it is down with nothing held
			case lp.holding:
				if !s.deferred[p.Address] {
					s.deferred[p.Address] = true
					s.log.Info("bgp peer settings changed while it restarts: applied once it is back; its stale routes are kept", "peer", p.Name, "address", p.Address)
				}
				continue
			}
		}
		delete(s.deferred, p.Address)
		if running {
			if err := s.deletePeer(ctx, p.Address); err != nil {
				errs = append(errs, err)
				continue
			}
		}
		s.mutations.Add(1)
		if err := s.srv.AddPeer(ctx, &api.AddPeerRequest{Peer: spec.apiPeer()}); err != nil {
			errs = append(errs, fmt.Errorf("adding peer %s (%v): %w", p.Name, p.Address, err))
			s.st.setPeerError(p.Address, err.Error())
			continue
		}
		s.peers[p.Address] = spec
		s.log.Info("bgp peer configured", "peer", p.Name, "address", p.Address, "asn", p.ASN)
	}
	for a := range live {
		if !want[a] {
			errs = append(errs, s.deletePeer(ctx, a))
		}
	}
	return errors.Join(errs...)
}

func (s *Speaker) deletePeer(ctx context.Context, a netip.Addr) error {
	s.mutations.Add(1)
	delete(s.peers, a)
	s.forgetState(&a)
	if err := s.srv.DeletePeer(ctx, &api.DeletePeerRequest{Address: a.String()}); err != nil {
		return fmt.Errorf("deleting peer %v: %w", a, err)
	}
	s.log.Info("bgp peer removed", "address", a)
	return nil
}
