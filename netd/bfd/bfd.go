// Package bfd is netd's fast failure detector: Bidirectional Forwarding
// Detection (RFC 5880) in asynchronous mode over single-hop UDP (RFC 5881:
// destination port 3784, source port 49152-65535, TTL 255 sent and
// required on receipt), without authentication, demand mode or the echo
// function. It interoperates with FRR's bfdd and BIRD's BFD.
//
// Why BFD and not a liveness signal of the overlay: Tailscale offers none
// that is both fast and per peer (its disco pings run every few seconds and
// are not exported), while BFD is what the BGP daemons on the other side of
// an external session (FRR, BIRD, a home router) already speak. A session
// runs on the path the BGP session uses (overlay address to overlay
// address), so it tests exactly the forwarding the learned routes need.
//
// A session starts slow (one packet a second, as RFC 5880 6.8.3 asks while
// it is not up) and, once up, switches to Config.TxInterval with a Poll
// Sequence. With the defaults (100 ms, multiplier 8) a silent peer is
// declared down 0.8 s after its last packet, so its routes leave the
// kernel within a second of it going silent, while a stall of either netd
// shorter than 0.7 s (SIGSTOP, a CPU hog, a long GC: the kernel keeps
// forwarding meanwhile) is not a failure: the peer's last packet came at
// most one interval before the stall, and its first packet after it comes
// at once (the overdue transmit timer fires on resume).
//
// A peer that stops cleanly (AdminDown) or restarts its session (a netd
// killed and back before the old session timed out: Down without a
// diagnostic) is alive: that is no failure, and it is not reported.
//
// Dampening: a Down is reported at once; the first Up after a Down is
// reported at once too (a single failure, a stall or a restart, costs no
// more than its own length), and every further Down in the last minute
// makes the next Up wait for a hold-down that doubles (Config.HoldDown up
// to Config.MaxHoldDown), so a flapping link does not make routes flap
// with it.
package bfd

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults.
const (
	DefaultPort        = 3784
	DefaultTxInterval  = 100 * time.Millisecond
	DefaultMultiplier  = 8
	DefaultHoldDown    = time.Second
	DefaultMaxHoldDown = 8 * time.Second
	DefaultWarnAfter   = 30 * time.Second
	dampWindow         = time.Minute
)

// Config configures a Server.
type Config struct {
	// Local is the address sessions run from (netd: the overlay address).
	Local netip.Addr
	// Port is the destination and listening port (default 3784).
	Port int
	// TxInterval is the DesiredMinTxInterval once up, RxInterval the
	// RequiredMinRxInterval (default TxInterval).
	TxInterval, RxInterval time.Duration
	// Multiplier is the detect multiplier (default 8).
	Multiplier uint8
	// HoldDown is the re-admission delay after a second Down within a
	// minute (the first Up after a single Down is reported at once); it
	// doubles with every further Down, up to MaxHoldDown.
	HoldDown, MaxHoldDown time.Duration
	// WarnAfter is how long a session may stay without coming up before
	// it gets a warning (status, metrics, one log line; default 30s).
	WarnAfter time.Duration
	// Hint returns what to check when the session with peer never comes
	// up (default: whether UDP 3784 is allowed both ways); "" means BFD
	// is optional for that peer (a router that may not run it): no
	// warning.
	Hint func(peer netip.Addr) string
	// OnChange is called, from the Server's goroutines, when a peer is
	// declared down (at once) or up (after the hold-down). It must not
	// block for long.
	OnChange func(peer netip.Addr, up bool)
	// OnQuiet, if set, is called from the session's goroutine when an Up
	// session has heard nothing from its peer for three quarters of the
	// detection time: a Down may follow, and a caller that wants to check
	// the path before acting on it can start now. It must not block.
	OnQuiet func(peer netip.Addr)
	Log     *slog.Logger
}

// Server runs the BFD sessions of one local address.
type Server struct {
	cfg     Config
	log     *slog.Logger
	metrics *metrics

	// listen opens the packet I/O (UDP sockets; tests swap it).
	listen func(ctx context.Context) (conn, error)

	// txMu guards txAt: per transmit interval, the instant the next
	// periodic packets go out (alignTx).
	txMu sync.Mutex
	txAt map[time.Duration]time.Time

	mu       sync.Mutex
	ctx      context.Context // set by Run
	want     []netip.Addr
	sessions map[netip.Addr]*peerRT
	byDiscr  map[uint32]*session
	conn     conn
}

type peerRT struct {
	s        *session
	cancel   context.CancelFunc
	state    State
	admitted bool
	downs    []time.Time // recent downs, for dampening
	total    int
	admit    *time.Timer
}

// New returns a Server; sessions start when Run runs. Metrics are
// registered on reg (nil: none).
func New(cfg Config, reg prometheus.Registerer) (*Server, error) {
	if !cfg.Local.Is4() {
		return nil, fmt.Errorf("bfd: local address %v is not IPv4", cfg.Local)
	}
	if cfg.Port == 0 {
		cfg.Port = DefaultPort
	}
	if cfg.TxInterval <= 0 {
		cfg.TxInterval = DefaultTxInterval
	}
	if cfg.RxInterval <= 0 {
		cfg.RxInterval = cfg.TxInterval
	}
	if cfg.Multiplier == 0 {
		cfg.Multiplier = DefaultMultiplier
	}
	if cfg.HoldDown <= 0 {
		cfg.HoldDown = DefaultHoldDown
	}
	if cfg.MaxHoldDown < cfg.HoldDown {
		cfg.MaxHoldDown = max(DefaultMaxHoldDown, cfg.HoldDown)
	}
	if cfg.Log == nil {
		cfg.Log = slog.New(slog.DiscardHandler)
	}
	if cfg.WarnAfter <= 0 {
		cfg.WarnAfter = DefaultWarnAfter
	}
	if cfg.Hint == nil {
		cfg.Hint = func(netip.Addr) string {
			return fmt.Sprintf("is UDP %d allowed to and from it (tailnet policy, firewalls)?", cfg.Port)
		}
	}
	s := &Server{cfg: cfg, log: cfg.Log, sessions: map[netip.Addr]*peerRT{}, byDiscr: map[uint32]*session{}}
	s.listen = func(ctx context.Context) (conn, error) {
		return listenUDP(ctx, s.cfg.Local, s.cfg.Port, s.cfg.Port)
	}
	s.metrics = newMetrics(s)
	if reg != nil {
		if err := reg.Register(s.metrics); err != nil {
			return nil, fmt.Errorf("registering bfd metrics: %w", err)
		}
	}
	return s, nil
}

// SetPeers makes the set of sessions exactly peers (safe before Run).
func (s *Server) SetPeers(peers []netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.want = slices.Clone(peers)
	if s.ctx != nil {
		s.syncLocked()
	}
}

func (s *Server) syncLocked() {
	want := map[netip.Addr]bool{}
	for _, p := range s.want {
		want[p] = true
		if _, ok := s.sessions[p]; ok {
			continue
		}
		var discr uint32
		for discr == 0 || s.byDiscr[discr] != nil {
			discr = rand.Uint32()
		}
		ss := newSession(s, p, discr)
		ctx, cancel := context.WithCancel(s.ctx)
		s.sessions[p] = &peerRT{s: ss, cancel: cancel, state: Down}
		s.byDiscr[discr] = ss
		go ss.run(ctx)
	}
	for p, rt := range s.sessions {
		if !want[p] {
			rt.cancel()
			if rt.admit != nil {
				rt.admit.Stop()
			}
			delete(s.byDiscr, rt.s.local)
			delete(s.sessions, p)
		}
	}
}

// Run opens the sockets and runs the sessions until ctx is done. It
// retries the sockets while the local address is not there yet.
func (s *Server) Run(ctx context.Context) error {
	var c conn
	for {
		var err error
		c, err = s.listen(ctx)
		if err == nil {
			break
		}
		s.log.Warn("opening bfd sockets; retrying", "local", s.cfg.Local, "err", err)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(time.Second):
		}
	}
	defer c.closeRead()
	s.mu.Lock()
	s.conn = c
	s.ctx = ctx
	s.syncLocked()
	s.mu.Unlock()
	s.log.Info("bfd running", "local", s.cfg.Local, "port", s.cfg.Port, "txInterval", s.cfg.TxInterval, "multiplier", s.cfg.Multiplier)
	go func() {
		<-ctx.Done()
		c.closeRead()
	}()
	s.readLoop(c)
	// Give the sessions' AdminDown packets a moment before closing.
	time.AfterFunc(100*time.Millisecond, func() { c.closeWrite() })
	return nil
}

func (s *Server) readLoop(c conn) {
	buf := make([]byte, 512)
	for {
		n, from, ttl, err := c.read(buf)
		if err != nil {
			return // closed
		}
		if ttl != 255 {
			s.metrics.dropped.Inc()
			continue // RFC 5881 5: single hop only
		}
		p, err := parse(buf[:n])
		if err != nil {
			s.metrics.dropped.Inc()
			continue
		}
		s.mu.Lock()
		var ss *session
		if p.yourDiscr != 0 {
			ss = s.byDiscr[p.yourDiscr]
			if ss != nil && ss.peer != from {
				ss = nil
			}
		} else if rt := s.sessions[from]; rt != nil {
			ss = rt.s
		}
		s.mu.Unlock()
		if ss == nil {
			s.metrics.dropped.Inc()
			continue
		}
		select {
		case ss.rx <- p:
		default: // session busy: drop, as a lost packet
		}
	}
}

// alignTx returns the delay to a session's next periodic packet, a
// random time in [lo, hi] (the jitter window of interval). If the instant
// the server's sessions of the same interval send at next falls within
// the window, it is that one: each session still sends at a jittered
// interval within its window, but they all send in one wake-up of the
// process instead of one each (what an idle netd spends its CPU on).
func (s *Server) alignTx(interval, lo, hi time.Duration) time.Duration {
	now := time.Now()
	s.txMu.Lock()
	defer s.txMu.Unlock()
	if at, ok := s.txAt[interval]; ok {
		if d := at.Sub(now); d >= lo && d <= hi {
			return d
		}
	}
	d := lo + rand.N(hi-lo+1)
	if s.txAt == nil {
		s.txAt = map[time.Duration]time.Time{}
	}
	s.txAt[interval] = now.Add(d)
	return d
}

func (s *Server) send(peer netip.Addr, b []byte) {
	s.mu.Lock()
	c := s.conn
	s.mu.Unlock()
	if c == nil {
		return
	}
	if err := c.write(b, peer); err == nil {
		s.metrics.sent.Inc()
	}
}
