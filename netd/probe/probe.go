// Package probe watches the direct LAN path to same-site peers with ICMP
// echo, so that netd can send pod traffic over the LAN (MTU 1500, no
// WireGuard cost) while that path works and fall back to the overlay when
// it breaks. A path goes down after DownAfter missed replies in a row and
// comes back only after UpAfter answered probes in a row (hysteresis), so a
// flapping link does not make routes flap with it.
//
// It is also netd's one ICMP implementation: the raw socket (ListenICMP),
// the echo request (EchoRequest) and reading what answers it
// (ReadEchoReplies, AnswerTo) serve the path check (Echo), `netd doctor`
// and the lab's pings and chaos prober as well.
package probe

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// DefaultInterval is the time between probes of one target: with the
// defaults a LAN path that stops answering is down 0.6-0.75 s after its
// last answer (three probes missed, each judged two intervals after it
// went out), so its pod traffic is back on the overlay within a second.
const DefaultInterval = 150 * time.Millisecond

// Options tune the prober. Zero values take the defaults.
type Options struct {
	Interval  time.Duration // between probes of one target (default 150ms)
	DownAfter int           // missed replies that take a path down (default 3)
	UpAfter   int           // answered probes that bring it back (default 3)
	// Listen opens the ICMP socket (default icmp.ListenPacket on the
	// current network namespace); tests open it in another namespace, or
	// pass an in-memory one.
	Listen func(src netip.Addr) (PacketConn, error)
}

// PacketConn is what the prober needs of an ICMP socket; *icmp.PacketConn
// has it.
type PacketConn interface {
	ReadFrom(b []byte) (int, net.Addr, error)
	WriteTo(b []byte, dst net.Addr) (int, error)
	Close() error
}

func (o *Options) defaults() {
	if o.Interval <= 0 {
		o.Interval = DefaultInterval
	}
	if o.DownAfter <= 0 {
		o.DownAfter = 3
	}
	if o.UpAfter <= 0 {
		o.UpAfter = 3
	}
	if o.Listen == nil {
		o.Listen = listenEchoReplies
	}
}

// Target is a peer's LAN address.
type Target struct {
	Name string
	Addr netip.Addr
}

// TargetStatus is the state of one path.
type TargetStatus struct {
	Name    string     `json:"name"`
	Addr    netip.Addr `json:"addr"`
	Up      bool       `json:"up"`
	Since   time.Time  `json:"since"`
	LastRTT string     `json:"lastRTT,omitempty"`
	Flaps   int        `json:"flaps"`
}

// sent is when a probe went out: the time, and the prober's round.
type sent struct {
	at    time.Time
	round uint64
}

type target struct {
	TargetStatus
	seq     uint16
	sentAt  map[uint16]sent
	misses  int
	replies int
}

// Prober probes a set of targets from one source address.
type Prober struct {
	opts    Options
	log     *slog.Logger
	id      uint16
	changes chan struct{}
	up      *prometheus.GaugeVec
	flaps   *prometheus.CounterVec

	mu      sync.Mutex
	src     netip.Addr
	targets map[netip.Addr]*target
	reset   chan struct{}
	// round counts sendAll calls: a probe is judged only after a whole
	// round in which the receiver could read its reply (see sendAll).
	round uint64
}

// New returns a prober with no targets; call SetTargets, then Run.
func New(log *slog.Logger, reg prometheus.Registerer, opts Options) (*Prober, error) {
	opts.defaults()
	p := &Prober{
		opts:    opts,
		log:     log,
		id:      uint16(rand.IntN(0xffff) + 1),
		changes: make(chan struct{}, 1),
		targets: map[netip.Addr]*target{},
		reset:   make(chan struct{}, 1),
		up: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "netd_path_lan_up",
			Help: "1 if the direct LAN path to the peer answers probes.",
		}, []string{"peer"}),
		flaps: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "netd_path_lan_transitions_total",
			Help: "Up/down transitions of the direct LAN path to the peer.",
		}, []string{"peer"}),
	}
	for _, c := range []prometheus.Collector{p.up, p.flaps} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering probe metrics: %w", err)
		}
	}
	return p, nil
}

// Changes is poked whenever a path goes up or down.
func (p *Prober) Changes() <-chan struct{} { return p.changes }

// SetTargets replaces the probed set. A target already probed keeps its
// state; a new one starts up (optimistic, so a restart keeps the LAN routes
// it adopted) and goes down after DownAfter misses.
func (p *Prober) SetTargets(src netip.Addr, ts []Target) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed := src != p.src
	p.src = src
	keep := map[netip.Addr]bool{}
	for _, t := range ts {
		keep[t.Addr] = true
		if old, ok := p.targets[t.Addr]; ok {
			old.Name = t.Name
			continue
		}
		changed = true
		p.targets[t.Addr] = &target{
			TargetStatus: TargetStatus{Name: t.Name, Addr: t.Addr, Up: true, Since: time.Now()},
			sentAt:       map[uint16]sent{},
		}
		p.up.WithLabelValues(t.Name).Set(1)
	}
	for a, t := range p.targets {
		if !keep[a] {
			delete(p.targets, a)
			p.up.DeleteLabelValues(t.Name)
			changed = true
		}
	}
	if changed {
		select {
		case p.reset <- struct{}{}:
		default:
		}
	}
}

// Up reports whether the LAN path to addr is usable. An address that is not
// probed is reported down.
func (p *Prober) Up(addr netip.Addr) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.targets[addr]
	return ok && t.Up
}

// Status returns the state of every path, sorted by name.
func (p *Prober) Status() []TargetStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]TargetStatus, 0, len(p.targets))
	for _, t := range p.targets {
		out = append(out, t.TargetStatus)
	}
	slices.SortFunc(out, func(a, b TargetStatus) int { return cmpString(a.Name, b.Name) })
	return out
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

// Run probes until ctx is done. With no targets it only waits.
func (p *Prober) Run(ctx context.Context) error {
	lastErr := ""
	for ctx.Err() == nil {
		p.mu.Lock()
		src, n := p.src, len(p.targets)
		p.mu.Unlock()
		if n == 0 || !src.IsValid() {
			select {
			case <-ctx.Done():
				return nil
			case <-p.reset:
				continue
			}
		}
		if err := p.runFrom(ctx, src); err != nil && ctx.Err() == nil {
			// Without a socket nothing is verified: the LAN paths are down
			// (traffic takes the overlay) until probes answer again.
			p.allDown()
			if err.Error() != lastErr {
				p.log.Warn("lan probe socket failed; using the overlay and retrying", "src", src, "err", err)
				lastErr = err.Error()
			}
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(time.Second):
			}
		}
	}
	return nil
}

// runFrom probes from src until the target set changes or ctx ends.
func (p *Prober) runFrom(ctx context.Context, src netip.Addr) error {
	conn, err := p.opts.Listen(src)
	if err != nil {
		return fmt.Errorf("opening icmp socket on %s: %w", src, err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() {
		<-ctx.Done()
		_ = conn.Close()
	}()
	go p.receive(conn)
	p.forgetSent() // probes sent on an earlier socket get no answer here
	tick := time.NewTicker(p.opts.Interval)
	defer tick.Stop()
	p.sendAll(conn)
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-p.reset:
			// A new source needs a new socket; new or removed targets do
			// not (sendAll reads the set each round), and closing the
			// socket would lose the replies in flight: each would count
			// as a miss.
			p.mu.Lock()
			same, n := p.src == src, len(p.targets)
			p.mu.Unlock()
			if !same || n == 0 {
				return nil
			}
		case <-tick.C:
			p.sendAll(conn)
		}
	}
}

// forgetSent drops the probes in flight of every target.
func (p *Prober) forgetSent() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.targets {
		clear(t.sentAt)
	}
}

func (p *Prober) allDown() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, t := range p.targets {
		t.replies = 0
		if t.Up {
			p.transition(t, false)
		}
	}
}

func (p *Prober) sendAll(conn PacketConn) {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.round++
	for _, t := range p.targets {
		// A probe unanswered for two intervals is a miss (LAN RTTs are far
		// below), once two rounds have passed since it was sent. The
		// rounds matter when netd itself stalls (a loaded CPU, a long
		// pause): the first round after the stall comes late, while the
		// replies to the probes sent before it may still wait in the
		// socket for the receiver; judged by time alone they would all be
		// misses at once, and a path that never broke would go down.
		for seq, s := range t.sentAt {
			if now.Sub(s.at) >= 2*p.opts.Interval && p.round-s.round >= 2 {
				delete(t.sentAt, seq)
				p.miss(t)
			}
		}
		t.seq++
		b, err := EchoRequest(p.id, t.seq, []byte("netd-lan-probe"))
		if err != nil {
			continue
		}
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: t.Addr.AsSlice()}); err != nil {
			// An unreachable LAN fails at once: count it as a miss.
			p.miss(t)
			continue
		}
		t.sentAt[t.seq] = sent{at: now, round: p.round}
	}
}

func (p *Prober) receive(conn PacketConn) {
	ReadEchoReplies(conn, p.id, func(from netip.Addr, seq uint16, _ []byte) bool {
		p.reply(from, seq)
		return false
	})
}

func (p *Prober) reply(addr netip.Addr, seq uint16) {
	p.mu.Lock()
	defer p.mu.Unlock()
	t, ok := p.targets[addr]
	if !ok {
		return
	}
	s, ok := t.sentAt[seq]
	if !ok {
		return
	}
	delete(t.sentAt, seq)
	t.LastRTT = time.Since(s.at).Round(time.Microsecond).String()
	t.misses = 0
	t.replies++
	if !t.Up && t.replies >= p.opts.UpAfter {
		p.transition(t, true)
	}
}

func (p *Prober) miss(t *target) {
	t.replies = 0
	t.misses++
	if t.Up && t.misses >= p.opts.DownAfter {
		p.transition(t, false)
	}
}

func (p *Prober) transition(t *target, up bool) {
	t.Up = up
	t.Since = time.Now()
	t.Flaps++
	v := 0.0
	if up {
		v = 1
	}
	p.up.WithLabelValues(t.Name).Set(v)
	p.flaps.WithLabelValues(t.Name).Inc()
	p.log.Info("lan path changed", "peer", t.Name, "addr", t.Addr, "up", up)
	select {
	case p.changes <- struct{}{}:
	default:
	}
}
