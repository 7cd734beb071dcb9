package bgp

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
)

// After a session drops, GoBGP v3 keeps the peer Idle for a hard-coded
// 5 s (pkg/server/fsm.go: idle() re-arms its timer with holdtimeIdle once
// the first idle hold has passed) and closes every connection it accepts
// meanwhile, so a restarted neighbour could not come back for 5 s, plus
// the 1-2 s a dialer waits before its first attempt. (A speaker that
// dials a restarting peer keeps the 5 s: see skipIdleHold.) Only ResetPeer sets
// another idle hold (IdleHoldTimeAfterReset, whole seconds, at least 1: 0
// becomes GoBGP's default of 30), and only a timer armed after it uses
// it; an admin state change re-arms the running timer. So when a session
// drops (Idle after another state), skipIdleHold sets the idle hold to
// 1 s with a ResetPeer and re-arms the timer with DisablePeer and
// EnablePeer. None of this makes GoBGP leave Idle or change state: the
// paths it keeps as stale for a restarting peer stay (an Idle transition
// while the peer restarts would drop them, server.go handleFSMMessage),
// and the NOTIFICATION ResetPeer queues for an Idle peer is discarded at
// its next state change.

// idleHoldAfterDrop is the idle hold netd sets after a dropped session:
// the least GoBGP's API accepts.
const idleHoldAfterDrop = 1

// idleActBefore bounds how long after the drop the idle hold is still cut.
const idleActBefore = 3 * time.Second

// stateSeen records a peer's session state from GoBGP's watch events and
// reports whether the peer just dropped into Idle from another state (not
// a peer just added, which GoBGP moves out of Idle at once).
func (s *Speaker) stateSeen(a netip.Addr, ss api.PeerState_SessionState) bool {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	prev, known := s.lastState[a]
	s.lastState[a] = ss
	return ss == api.PeerState_IDLE && known && prev != api.PeerState_IDLE
}

// forgetState drops what stateSeen knows of peer a (nil: of every peer),
// when it is deleted or GoBGP stops.
func (s *Speaker) forgetState(a *netip.Addr) {
	s.idleMu.Lock()
	defer s.idleMu.Unlock()
	if a == nil {
		clear(s.lastState)
		return
	}
	delete(s.lastState, *a)
}

// peerDropped is called (from GoBGP's watch goroutine, so it must not
// block) when a peer's session dropped into Idle; the idle hold is cut in
// the background.
func (s *Speaker) peerDropped(a netip.Addr) {
	at := time.Now()
	go func() {
		// Past this, GoBGP's own 5 s idle hold is nearly over; acting
		// then could meet the peer in Active, where a disable is a
		// state change.
		ctx, cancel := context.WithDeadline(context.Background(), at.Add(idleActBefore))
		defer cancel()
		start := time.Now()
		done, err := s.skipIdleHold(ctx, a)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("cutting gobgp's idle hold after a dropped session", "address", a, "err", err)
		case done:
			s.metrics.idleHoldCut.Inc()
			s.log.Debug("gobgp's idle hold after a dropped session cut to 1s", "address", a, "took", time.Since(start))
		}
	}()
}

// skipIdleHold cuts the idle hold of peer a to idleHoldAfterDrop if GoBGP
// has it Idle and administratively up. It reports whether it did.
func (s *Speaker) skipIdleHold(ctx context.Context, a netip.Addr) (bool, error) {
	if !s.lock(ctx) {
		return false, ctx.Err()
	}
	defer s.unlock()
	if s.srv == nil {
		return false, nil
	}
	spec, ok := s.peers[a]
	if !ok {
		return false, nil
	}
	ss, admin, err := s.peerAdmin(ctx, a)
	if err != nil || ss != api.PeerState_IDLE || admin != api.PeerState_UP {
		return false, err
	}
	// A speaker that dials and keeps a restarting peer's paths as stale
	// keeps GoBGP's idle hold: its first attempt, 1-2 s after the hold,
	// could reach the peer while it is still starting (its listener open,
	// the neighbour not yet configured, or being re-added with the
	// restart bit), and GoBGP drops every stale path of a restarting peer
	// whose new session fails before Established. Waiting for the
	// restarted peer to dial (this side passive), or holding nothing,
	// costs nothing.
	if !spec.passive && s.holdsStale(ctx, a) {
		return false, nil
	}
	addr := a.String()
	if err := s.srv.ResetPeer(ctx, &api.ResetPeerRequest{Address: addr, Communication: "netd: idle hold after a dropped session"}); err != nil {
		return false, fmt.Errorf("setting the idle hold: %w", err)
	}
	if err := s.srv.DisablePeer(ctx, &api.DisablePeerRequest{Address: addr}); err != nil {
		return false, fmt.Errorf("re-arming the idle hold (disable): %w", err)
	}
	// GoBGP takes one admin state change at a time (a one-slot channel;
	// a second one sent before the first is taken is dropped), so the
	// enable waits until the disable is seen; and it is sent whatever
	// happens, on a context of its own: a peer left disabled never
	// comes back.
	werr := s.waitAdmin(ctx, a, api.PeerState_DOWN)
	ectx, cancel := context.WithTimeout(context.WithoutCancel(ctx), timeoutReset)
	defer cancel()
	if err := s.srv.EnablePeer(ectx, &api.EnablePeerRequest{Address: addr}); err != nil {
		return false, fmt.Errorf("re-arming the idle hold (enable): %w", err)
	}
	if err := s.waitAdmin(ectx, a, api.PeerState_UP); err != nil {
		return false, err
	}
	return werr == nil, werr
}

// peerAdmin returns GoBGP's session and admin state of peer a.
func (s *Speaker) peerAdmin(ctx context.Context, a netip.Addr) (api.PeerState_SessionState, api.PeerState_AdminState, error) {
	var ss api.PeerState_SessionState
	admin := api.PeerState_AdminState(-1)
	err := s.srv.ListPeer(ctx, &api.ListPeerRequest{Address: a.String()}, func(p *api.Peer) {
		ss, admin = p.GetState().GetSessionState(), p.GetState().GetAdminState()
	})
	if err != nil {
		return ss, admin, fmt.Errorf("reading peer %v: %w", a, err)
	}
	return ss, admin, nil
}

// holdsStale reports whether GoBGP keeps peer a's paths as stale (the
// peer is restarting).
func (s *Speaker) holdsStale(ctx context.Context, a netip.Addr) bool {
	held := false
	_ = s.srv.ListPeer(ctx, &api.ListPeerRequest{Address: a.String()}, func(p *api.Peer) {
		held = p.GetGracefulRestart().GetPeerRestarting()
	})
	return held
}

// waitAdmin polls until GoBGP reports peer a in admin state want.
func (s *Speaker) waitAdmin(ctx context.Context, a netip.Addr, want api.PeerState_AdminState) error {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		_, admin, err := s.peerAdmin(ctx, a)
		if err != nil || admin == want {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for peer %v to be admin %v: %w", a, want, ctx.Err())
		case <-t.C:
		}
	}
}
