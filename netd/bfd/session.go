package bfd

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"
)

// slowTx is the transmit interval while a session is not up (RFC 5880
// 6.8.3: at least one second).
const slowTx = time.Second

// session is one BFD session, driven by its own goroutine: received
// packets arrive on rx, timers fire in the same select, so the state needs
// no lock. Every state change is reported to the Server (raw, undampened).
type session struct {
	srv   *Server
	peer  netip.Addr
	local uint32
	rx    chan packet

	state         State
	diag          uint8
	remote        uint32
	remoteState   State
	remoteDiag    uint8
	remoteMinRx   time.Duration
	remoteDesired time.Duration
	remoteMult    uint8
	desiredTx     time.Duration
	poll          bool
	lastRx        time.Time
	tx            *time.Timer

	// mu guards info, the session's state as status shows it: written by
	// the session's goroutine, read by Server.States.
	mu   sync.Mutex
	info info
}

// info is what status and metrics show of a session beyond its state.
type info struct {
	state, remoteState State
	diag               uint8
	started            time.Time
	lastChange         time.Time
	lastRx             time.Time
	everUp             bool
	changes            int
	localTx            time.Duration
	remoteTx, remoteRx time.Duration
	remoteMult         uint8
	// warning says why a session never came up, once WarnAfter passed.
	warning string
}

func newSession(srv *Server, peer netip.Addr, discr uint32) *session {
	now := time.Now()
	return &session{
		srv: srv, peer: peer, local: discr, rx: make(chan packet, 16),
		state: Down, remoteState: Down, remoteMinRx: time.Microsecond, desiredTx: slowTx,
		info: info{state: Down, remoteState: Down, started: now, localTx: slowTx},
	}
}

// snapshot returns the session's info.
func (s *session) snapshot() info {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.info
}

// publish copies the goroutine's view into info.
func (s *session) publish(change bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	in := &s.info
	in.state, in.remoteState, in.diag, in.lastRx = s.state, s.remoteState, s.diag, s.lastRx
	in.localTx, in.remoteTx, in.remoteRx, in.remoteMult = s.desiredTx, s.remoteDesired, s.remoteMinRx, s.remoteMult
	if change {
		in.changes++
		in.lastChange = time.Now()
	}
	if s.state == Up {
		in.everUp, in.warning = true, ""
	}
}

// neverUp is called WarnAfter after the session started: a session that
// never came up gets a warning with the likely reason, logged once.
func (s *session) neverUp() {
	s.mu.Lock()
	in := &s.info
	if in.everUp {
		s.mu.Unlock()
		return
	}
	after := s.srv.cfg.WarnAfter
	hint := s.srv.cfg.Hint(s.peer)
	if hint == "" { // a peer BFD is optional for
		s.mu.Unlock()
		return
	}
	if in.lastRx.IsZero() {
		in.warning = fmt.Sprintf("no BFD packets received from %s for %s: %s", s.peer, after, hint)
	} else {
		in.warning = fmt.Sprintf("BFD packets from %s arrive but the session has not come up in %s (here %s, the peer says %s): the peer may not receive this node's packets; %s",
			s.peer, after, in.state, in.remoteState, hint)
	}
	w := in.warning
	s.mu.Unlock()
	s.srv.log.Warn("bfd session never came up", "peer", s.peer, "reason", w)
}

func (s *session) run(ctx context.Context) {
	s.tx = time.NewTimer(0)
	tx := s.tx
	defer tx.Stop()
	detect := time.NewTimer(time.Hour)
	detect.Stop()
	defer detect.Stop()
	quiet := time.NewTimer(time.Hour)
	quiet.Stop()
	defer quiet.Stop()
	warn := time.NewTimer(s.srv.cfg.WarnAfter)
	defer warn.Stop()
	for {
		select {
		case <-warn.C:
			s.neverUp()
		case <-ctx.Done():
			// Tell the peer we go away on purpose (AdminDown), so it does
			// not count a detection failure; best effort.
			if s.state == Up || s.state == Init {
				s.state, s.diag = AdminDown, diagAdminDown
				s.send(false)
			}
			return
		case p := <-s.rx:
			s.receive(p, detect, quiet)
		case <-quiet.C:
			if s.state == Up && s.srv.cfg.OnQuiet != nil {
				s.srv.cfg.OnQuiet(s.peer)
			}
		case <-detect.C:
			if s.state == Init || s.state == Up {
				s.remote = 0
				s.setState(Down, diagDetectExpired)
			}
		case <-tx.C:
			// RFC 5880 6.8.7: no periodic packets while the peer's
			// RequiredMinRxInterval is 0.
			if s.remoteMinRx > 0 {
				s.send(false)
			}
			tx.Reset(s.nextTx())
		}
	}
}

// nextTx is the delay to the next periodic packet: the interval reduced
// by 10-25% (RFC 5880 6.8.7 asks for up to 25%, and at least 10% with a
// detect multiplier of 1: then 10-15%), and aligned with the other sessions of the server that send at
// the same interval (Server.alignTx), so that a node's sessions wake netd
// once per interval together rather than once each.
func (s *session) nextTx() time.Duration {
	d := max(s.desiredTx, s.remoteMinRx)
	hi := 25
	if s.srv.cfg.Multiplier == 1 {
		hi = 15
	}
	return s.srv.alignTx(d, d-d*time.Duration(hi)/100, d-d/10)
}

func (s *session) receive(p packet, detect, quiet *time.Timer) {
	if p.yourDiscr != 0 && p.yourDiscr != s.local {
		return
	}
	s.lastRx = time.Now()
	s.remote = p.myDiscr
	s.remoteState = p.state
	s.remoteDiag = p.diag
	s.remoteMinRx = p.requiredMinRx
	s.remoteDesired = p.desiredMinTx
	s.remoteMult = p.detectMult
	if p.final {
		s.poll = false
	}
	before := s.state
	switch {
	case p.state == AdminDown:
		if s.state != Down {
			s.setState(Down, diagNeighborDown)
		}
	case s.state == Down && p.state == Down:
		s.setState(Init, diagNone)
	case s.state == Down && p.state == Init, s.state == Init && (p.state == Init || p.state == Up):
		s.setState(Up, diagNone)
	case s.state == Up && p.state == Down:
		s.setState(Down, diagNeighborDown)
	}
	// Answer a Poll with a Final; tell a state change at once rather than
	// at the next (possibly slow) periodic packet.
	if p.poll || s.state != before {
		s.send(p.poll)
	}
	if s.state == before {
		s.publish(false)
	}
	// RFC 5880 6.8.4: detection time = the peer's multiplier times the
	// larger of our RequiredMinRx and its DesiredMinTx.
	// Three quarters into it, an Up session that heard nothing since is
	// quiet (Config.OnQuiet).
	if s.state == Init || s.state == Up {
		d := time.Duration(p.detectMult) * max(s.srv.cfg.RxInterval, s.remoteDesired)
		detect.Reset(d)
		quiet.Reset(d * 3 / 4)
	} else {
		detect.Stop()
		quiet.Stop()
	}
}

// setState changes state; going up starts a Poll Sequence for the fast
// transmit interval, going down falls back to the slow one.
func (s *session) setState(st State, diag uint8) {
	if st == s.state {
		return
	}
	s.state, s.diag = st, diag
	if st == Up {
		s.desiredTx, s.poll = s.srv.cfg.TxInterval, true
	} else {
		s.desiredTx, s.poll = slowTx, false
	}
	// The next periodic packet follows the new interval (the slow one
	// may be up to a second away).
	if s.tx != nil {
		s.tx.Reset(s.nextTx())
	}
	s.publish(true)
	s.srv.transition(s.peer, st, diag, st != Up && s.peerRestarted())
}

// peerRestarted reports whether the peer itself took the session down
// without finding a failure: it says AdminDown (it stops on purpose), or
// Down without a diagnostic (its session started again: a restarted
// netd, before the old session timed out here). Either way it is alive
// and its packets arrive, so this is no failure (RFC 5882 3.2).
func (s *session) peerRestarted() bool {
	return s.remoteState == AdminDown || s.remoteState == Down && s.remoteDiag == diagNone && s.diag == diagNeighborDown
}

func (s *session) send(final bool) {
	p := packet{
		diag: s.diag, state: s.state, poll: s.poll && !final, final: final,
		detectMult: s.srv.cfg.Multiplier, myDiscr: s.local, yourDiscr: s.remote,
		desiredMinTx: s.desiredTx, requiredMinRx: s.srv.cfg.RxInterval,
	}
	s.srv.send(s.peer, p.marshal())
}
