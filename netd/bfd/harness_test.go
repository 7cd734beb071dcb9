package bfd

// The harness of the state machine tests (statemachine_test.go): an
// in-memory wire between Servers, and a node (a Server on it whose
// reports are recorded), run in a testing/synctest bubble.

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/internal/testutil"
)

// wire joins in-memory conns by address: what one writes to a peer
// arrives at the conn of that address with the wire's TTL, unless the
// link of either end is cut. It lets the state machine run in a
// testing/synctest bubble, in virtual time.
type wire struct {
	mu   sync.Mutex
	ends map[netip.Addr]*memConn
	cut  map[netip.Addr]bool
	ttl  int
}

func newWire() *wire {
	return &wire{ends: map[netip.Addr]*memConn{}, cut: map[netip.Addr]bool{}, ttl: 255}
}

type datagram struct {
	b    []byte
	from netip.Addr
	ttl  int
}

type memConn struct {
	w              *wire
	addr           netip.Addr
	in             chan datagram
	rdone, wdone   chan struct{}
	rclose, wclose sync.Once
}

// attach makes srv use a new conn of the wire at its local address.
func (w *wire) attach(srv *Server) {
	srv.listen = func(context.Context) (conn, error) {
		c := &memConn{w: w, addr: srv.cfg.Local, in: make(chan datagram, 64),
			rdone: make(chan struct{}), wdone: make(chan struct{})}
		w.mu.Lock()
		w.ends[c.addr] = c
		w.mu.Unlock()
		return c, nil
	}
}

func (w *wire) setCut(a netip.Addr, cut bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.cut[a] = cut
}

func (w *wire) setTTL(ttl int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.ttl = ttl
}

func (c *memConn) read(buf []byte) (int, netip.Addr, int, error) {
	select {
	case d := <-c.in:
		return copy(buf, d.b), d.from, d.ttl, nil
	case <-c.rdone:
		return 0, netip.Addr{}, 0, net.ErrClosed
	}
}

func (c *memConn) write(b []byte, peer netip.Addr) error {
	select {
	case <-c.wdone:
		return net.ErrClosed
	default:
	}
	c.w.mu.Lock()
	dst, ttl := c.w.ends[peer], c.w.ttl
	lost := c.w.cut[c.addr] || c.w.cut[peer]
	c.w.mu.Unlock()
	if dst == nil || lost {
		return nil // sent, and lost on the way
	}
	select {
	case dst.in <- datagram{b: append([]byte(nil), b...), from: c.addr, ttl: ttl}:
	default:
	}
	return nil
}

func (c *memConn) closeRead()  { c.rclose.Do(func() { close(c.rdone) }) }
func (c *memConn) closeWrite() { c.wclose.Do(func() { close(c.wdone) }) }

// change is one OnChange call and when it happened.
type change struct {
	up bool
	at time.Time
}

// node is a Server on the wire with its reported changes.
type node struct {
	srv    *Server
	reg    *prometheus.Registry
	mu     sync.Mutex
	ch     []change
	quiet  []time.Time // OnQuiet calls
	cancel context.CancelFunc
	done   chan struct{}
}

var (
	addrA = netip.MustParseAddr("100.64.0.1")
	addrB = netip.MustParseAddr("100.64.0.2")
)

// startNode runs a Server at local with peers on w; stop it with stop.
func startNode(t *testing.T, w *wire, local netip.Addr, cfg Config, peers ...netip.Addr) *node {
	t.Helper()
	n := &node{reg: prometheus.NewRegistry(), done: make(chan struct{})}
	cfg.Local = local
	cfg.OnChange = func(_ netip.Addr, up bool) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.ch = append(n.ch, change{up, time.Now()})
	}
	cfg.OnQuiet = func(netip.Addr) {
		n.mu.Lock()
		defer n.mu.Unlock()
		n.quiet = append(n.quiet, time.Now())
	}
	srv, err := New(cfg, n.reg)
	if err != nil {
		t.Fatal(err)
	}
	w.attach(srv)
	srv.SetPeers(peers)
	n.srv = srv
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	go func() {
		defer close(n.done)
		_ = srv.Run(ctx)
	}()
	return n
}

// stop ends the node's Run (a clean stop: AdminDown to its peers) and
// waits until its goroutines are gone.
func (n *node) stop() {
	n.cancel()
	<-n.done
	time.Sleep(time.Second) // virtual: lets the AdminDown go and the conn close
	synctest.Wait()
}

func (n *node) changes() []change {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]change(nil), n.ch...)
}

func (n *node) quiets() []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	return append([]time.Time(nil), n.quiet...)
}

func (n *node) state() PeerState {
	s := n.srv.States()
	if len(s) != 1 {
		return PeerState{}
	}
	return s[0]
}

// until advances virtual time in 1ms steps until cond holds (at most d)
// and returns when it did.
func until(t *testing.T, d time.Duration, what string, cond func() bool) time.Time {
	t.Helper()
	testutil.Every(time.Millisecond).Eventually(t, d, what, cond)
	return time.Now()
}
