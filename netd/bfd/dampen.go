package bfd

// Dampening: what a session's state changes become for OnChange. A Down
// is reported at once, the first Up after it too, and further Downs
// within a minute make the next Up wait for a growing hold-down (see the
// package comment).

import (
	"net/netip"
	"slices"
	"time"
)

// transition is called by a session on every state change; it applies
// the dampening and reports to OnChange. A peer that says it goes
// administratively down (a netd stopping) or that started its session
// again (a restarted netd: Down without a diagnostic) is not a failure
// (RFC 5882 3.2): it is not reported and not counted for dampening.
func (s *Server) transition(peer netip.Addr, st State, diag uint8, adminDown bool) {
	s.mu.Lock()
	rt := s.sessions[peer]
	if rt == nil {
		s.mu.Unlock()
		return
	}
	prev := rt.state
	rt.state = st
	var report, up bool
	switch {
	case st == Up:
		now := time.Now()
		rt.downs = slices.DeleteFunc(rt.downs, func(t time.Time) bool { return now.Sub(t) > dampWindow })
		hold := holdDown(len(rt.downs), s.cfg.HoldDown, s.cfg.MaxHoldDown)
		if hold == 0 {
			rt.admitted, report, up = true, true, true
			break
		}
		s.log.Info("bfd session up; holding before re-admission", "peer", peer, "holdDown", hold, "recentDowns", len(rt.downs))
		rt.admit = time.AfterFunc(hold, func() { s.admit(peer, rt) })
	case prev == Up || prev == Init:
		if st != Down && st != AdminDown {
			break
		}
		if rt.admit != nil {
			rt.admit.Stop()
			rt.admit = nil
		}
		if adminDown {
			rt.admitted = false
			break
		}
		if prev == Up {
			rt.downs = append(rt.downs, time.Now())
			rt.total++
		}
		if rt.admitted {
			rt.admitted, report = false, true
		}
	}
	s.mu.Unlock()
	s.log.Info("bfd session state changed", "peer", peer, "from", prev.String(), "to", st.String(), "diag", diag, "peerAdminDown", adminDown)
	if report && s.cfg.OnChange != nil {
		s.cfg.OnChange(peer, up)
	}
}

// holdDown is how long an Up waits to be reported after downs failures
// in the last minute: nothing after none or one, then first, doubled per
// further failure, up to most.
func holdDown(downs int, first, most time.Duration) time.Duration {
	if downs < 2 {
		return 0
	}
	return min(first<<min(downs-2, 30), most)
}

func (s *Server) admit(peer netip.Addr, rt *peerRT) {
	s.mu.Lock()
	ok := s.sessions[peer] == rt && rt.state == Up && !rt.admitted
	if ok {
		rt.admitted, rt.admit = true, nil
	}
	s.mu.Unlock()
	if ok {
		s.log.Info("bfd peer re-admitted", "peer", peer)
		if s.cfg.OnChange != nil {
			s.cfg.OnChange(peer, true)
		}
	}
}
