package bgp

import (
	"context"
	"net/netip"
	"time"

	api "github.com/osrg/gobgp/v3/api"
	"github.com/osrg/gobgp/v3/pkg/server"
)

// Synced reports whether the route reconciler may prune the routes a
// previous run left in the kernel that nobody has re-announced: whether
// every configured peer is settled (see settled). Until the first
// Reconcile it is false.
func (s *Speaker) Synced() bool {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	ok, _ := st.syncStatus(time.Now())
	return ok
}

// syncStatus reports whether every configured peer is settled at now and,
// if not, the earliest time one of them settles by a deadline (zero if
// none waits for one). st.mu is held.
//
// A peer is settled when
//   - its session is up and it has sent End-of-RIB (and Learned has been
//     re-read after it);
//   - its session is up without graceful restart negotiated (it sends no
//     End-of-RIB) for the settle bound: its first updates are in;
//   - its session is up with graceful restart but no End-of-RIB for its
//     restart time (RFC 4724's selection deferral gives up then);
//   - it is down and coming back (a route this node kept from its last
//     run goes through it: MarkRestarting) and its restart time has
//     passed since it went down, or since this speaker started if it has
//     not been up since: by then every speaker drops its routes too;
//   - it is down and not coming back, for the settle bound.
//
// A peer's restart time is what it advertised, else the configured one;
// without graceful restart in the configuration, the settle bound.
func (st *state) syncStatus(now time.Time) (bool, time.Time) {
	if len(st.cfg.Peers) == 0 && st.cfg.ASN == 0 {
		return false, time.Time{} // never reconciled
	}
	gr := st.cfg.GracefulRestart
	ok := true
	var next time.Time
	wait := func(from time.Time, d time.Duration) {
		if at := from.Add(d); now.Before(at) {
			ok = false
			if next.IsZero() || at.Before(next) {
				next = at
			}
		}
	}
	for _, p := range st.cfg.Peers {
		rt := st.peers[p.Address]
		if rt == nil {
			continue
		}
		restart := st.bound
		if gr.Enabled && gr.RestartTime > 0 {
			restart = gr.RestartTime
		}
		if rt.grKnown && rt.peerRestart > 0 {
			restart = rt.peerRestart
		}
		comingBack := st.expect[p.Address] || p.LANAddr.IsValid() && st.expect[p.LANAddr]
		switch {
		case rt.established && rt.eor:
		case rt.established && (rt.grKnown && !rt.grNegotiated || !rt.grKnown && !gr.Enabled):
			wait(rt.since, st.bound)
		case rt.established:
			if !rt.grKnown {
				ok = false // known at the next read of the peers
				continue
			}
			wait(rt.since, restart)
		case comingBack && rt.everUp:
			wait(rt.since, restart)
		case comingBack:
			wait(rt.added, restart)
		default:
			wait(rt.since, st.bound)
		}
	}
	return ok, next
}

// checkSync pokes Changes if Synced changed, and arms a timer that does
// it again when Synced may turn true by a deadline passing, without any
// event.
func (s *Speaker) checkSync() {
	st := &s.st
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.syncTimer != nil {
		st.syncTimer.Stop()
		st.syncTimer = nil
	}
	ok, next := st.syncStatus(time.Now())
	if ok != st.synced {
		st.synced = ok
		poke(s.changes)
	}
	if ok || next.IsZero() {
		return
	}
	st.syncTimer = time.AfterFunc(time.Until(next)+time.Millisecond, func() {
		poke(s.changes)
		s.checkSync()
	})
}

// readRestartCaps records, for each peer whose session came up since the
// last read, whether graceful restart was negotiated and the restart time
// it advertised.
func (s *Speaker) readRestartCaps(ctx context.Context, srv *server.BgpServer) {
	st := &s.st
	st.mu.Lock()
	need := false
	for _, rt := range st.peers {
		need = need || rt.established && !rt.grKnown
	}
	st.mu.Unlock()
	if !need {
		return
	}
	type caps struct {
		negotiated bool
		restart    time.Duration
	}
	got := map[netip.Addr]caps{}
	err := srv.ListPeer(ctx, &api.ListPeerRequest{}, func(p *api.Peer) {
		a, err := netip.ParseAddr(p.GetConf().GetNeighborAddress())
		if err != nil || p.GetState().GetSessionState() != api.PeerState_ESTABLISHED {
			return
		}
		c := caps{restart: time.Duration(p.GetGracefulRestart().GetPeerRestartTime()) * time.Second}
		for _, af := range p.GetAfiSafis() {
			m := af.GetMpGracefulRestart()
			c.negotiated = c.negotiated || m.GetConfig().GetEnabled() && m.GetState().GetReceived()
		}
		got[a] = c
	})
	if err != nil {
		return // read again at the next refresh
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	for a, c := range got {
		if rt := st.peers[a]; rt != nil && rt.established && !rt.grKnown {
			rt.grKnown, rt.grNegotiated, rt.peerRestart = true, c.negotiated, c.restart
		}
	}
}
