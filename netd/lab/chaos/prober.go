package chaos

import (
	"context"
	"encoding/binary"
	"math/rand/v2"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/netd/probe"
)

// Pair is a source and destination pod.
type Pair struct {
	Src, Dst lab.Pod
}

func (p Pair) String() string {
	return p.Src.Node + "/" + p.Src.Name + "->" + p.Dst.Node + "/" + p.Dst.Name
}

// Loss is one echo request that got no reply within the prober's timeout
// (or could not be sent).
type Loss struct {
	Pair int // index in Prober.Pairs
	At   time.Time
}

// Prober sends one ICMP echo request every interval from every pod to
// every other pod (one raw socket per source pod) and records every
// request left unanswered.
type Prober struct {
	Pairs    []Pair
	Interval time.Duration
	Timeout  time.Duration

	mu     sync.Mutex
	losses []Loss
	sent   int
	cancel context.CancelFunc
	wg     sync.WaitGroup
	srcs   []*source
}

// source is one pod's socket and its requests in flight.
type source struct {
	pod     lab.Pod
	conn    *net.IPConn
	id      uint16
	pairs   map[netip.Addr]int // destination -> pair index
	mu      sync.Mutex
	pending map[int]map[uint64]time.Time // pair -> round -> sent at
	// answered is, per pair, when the newest answered request was sent.
	answered map[int]time.Time
}

// StartProber starts probing between every ordered pair of pods.
func StartProber(ctx context.Context, pods []lab.Pod, interval, timeout time.Duration) (*Prober, error) {
	ctx, cancel := context.WithCancel(ctx)
	p := &Prober{Interval: interval, Timeout: timeout, cancel: cancel}
	var srcs []*source
	for _, s := range pods {
		src := &source{pod: s, id: uint16(rand.IntN(1 << 16)), pairs: map[netip.Addr]int{}, pending: map[int]map[uint64]time.Time{}, answered: map[int]time.Time{}}
		for _, d := range pods {
			if d.Addr == s.Addr {
				continue
			}
			src.pairs[d.Addr] = len(p.Pairs)
			src.pending[len(p.Pairs)] = map[uint64]time.Time{}
			p.Pairs = append(p.Pairs, Pair{Src: s, Dst: d})
		}
		// Only echo replies (not the other pods' requests), and a receive
		// buffer that rides out a stall of the receiving goroutine on a
		// loaded machine: without both, the prober drops replies itself.
		c, err := lab.ListenICMP(ctx, s.NS, s.Addr, probe.Socket{EchoRepliesOnly: true, ReadBuffer: 8 << 20})
		if err != nil {
			cancel()
			for _, o := range srcs {
				_ = o.conn.Close()
			}
			return nil, err
		}
		src.conn = c
		srcs = append(srcs, src)
	}
	p.srcs = srcs
	for _, s := range srcs {
		p.wg.Add(2)
		go p.send(ctx, s)
		go p.receive(s)
		go func() { <-ctx.Done(); _ = s.conn.SetReadDeadline(time.Now().Add(timeout)) }()
	}
	return p, nil
}

func (p *Prober) send(ctx context.Context, s *source) {
	defer p.wg.Done()
	t := time.NewTicker(p.Interval)
	defer t.Stop()
	data := make([]byte, 56)
	for round := uint64(1); ; round++ {
		now := time.Now()
		binary.BigEndian.PutUint64(data, round)
		for dst, pi := range s.pairs {
			// In flight before it is sent: the reply may come back before
			// WriteTo returns.
			s.mu.Lock()
			s.pending[pi][round] = now
			s.mu.Unlock()
			b, err := probe.EchoRequest(s.id, uint16(round), data)
			if err == nil {
				_, err = s.conn.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()})
			}
			if err != nil {
				s.mu.Lock()
				if _, ok := s.pending[pi][round]; ok {
					delete(s.pending[pi], round)
					p.lost(pi, now)
				}
				s.mu.Unlock()
			}
		}
		p.mu.Lock()
		p.sent += len(s.pairs)
		p.mu.Unlock()
		p.sweep(s, now.Add(-p.Timeout))
		select {
		case <-ctx.Done():
			// Wait for the replies still in flight, then count the rest.
			<-time.After(p.Timeout)
			p.sweep(s, time.Now())
			return
		case <-t.C:
		}
	}
}

// sweep counts as lost every request of s sent before cutoff.
func (p *Prober) sweep(s *source, cutoff time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for pi, m := range s.pending {
		for r, at := range m {
			if at.Before(cutoff) {
				delete(m, r)
				p.lost(pi, at)
			}
		}
	}
}

func (p *Prober) lost(pair int, at time.Time) {
	p.mu.Lock()
	p.losses = append(p.losses, Loss{Pair: pair, At: at})
	p.mu.Unlock()
}

func (p *Prober) receive(s *source) {
	defer p.wg.Done()
	probe.ReadEchoReplies(s.conn, s.id, func(from netip.Addr, _ uint16, data []byte) bool {
		pi, ok := s.pairs[from]
		if !ok || len(data) < 8 {
			return false
		}
		round := binary.BigEndian.Uint64(data)
		s.mu.Lock()
		if at, ok := s.pending[pi][round]; ok {
			delete(s.pending[pi], round)
			if at.After(s.answered[pi]) {
				s.answered[pi] = at
			}
		}
		s.mu.Unlock()
		return false
	})
}

// Losses returns the losses recorded so far (requests still in flight
// are not counted until their timeout passes).
func (p *Prober) Losses() []Loss {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]Loss(nil), p.losses...)
}

// Unanswered returns the pairs with no answered request sent at or after
// t: those whose path is not back yet.
func (p *Prober) Unanswered(t time.Time) []Pair {
	var out []Pair
	for _, s := range p.srcs {
		s.mu.Lock()
		for _, pi := range s.pairs {
			if s.answered[pi].Before(t) {
				out = append(out, p.Pairs[pi])
			}
		}
		s.mu.Unlock()
	}
	return out
}

// Sent returns how many requests were sent.
func (p *Prober) Sent() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sent
}

// Stop stops sending, waits the timeout for late replies, and closes the
// sockets.
func (p *Prober) Stop() {
	p.cancel()
	p.wg.Wait()
	for _, s := range p.srcs {
		_ = s.conn.Close()
	}
}
