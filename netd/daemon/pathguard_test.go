package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// fakeCutter records the speaker calls, with their virtual time.
type fakeCutter struct {
	mu    sync.Mutex
	calls []string
}

func (c *fakeCutter) add(s string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.calls = append(c.calls, s)
	return true
}
func (c *fakeCutter) PeerUnreachable(a netip.Addr) bool { return c.add("unreachable " + a.String()) }
func (c *fakeCutter) PathDead(a netip.Addr) bool        { return c.add("dead " + a.String()) }
func (c *fakeCutter) PeerReachable(a netip.Addr)        { c.add("reachable " + a.String()) }
func (c *fakeCutter) got() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.calls)
}

// fakePath answers the guard's echo: an address answers after rtt while
// alive says so; otherwise the question takes the whole wait.
type fakePath struct {
	mu    sync.Mutex
	alive map[netip.Addr]bool
	asked int
	rtt   time.Duration
}

func (p *fakePath) set(a netip.Addr, alive bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.alive[a] = alive
}

func (p *fakePath) echo(ctx context.Context, addrs []netip.Addr, wait, _ time.Duration) (netip.Addr, error) {
	p.mu.Lock()
	p.asked++
	var ans netip.Addr
	for _, a := range addrs {
		if p.alive[a] {
			ans = a
			break
		}
	}
	d := wait
	if ans.IsValid() {
		d = p.rtt
	}
	p.mu.Unlock()
	select {
	case <-ctx.Done():
		return netip.Addr{}, ctx.Err()
	case <-time.After(d):
		return ans, nil
	}
}

var (
	nodePeer = netip.MustParseAddr("100.64.0.3")
	nodeLAN  = netip.MustParseAddr("192.168.0.13")
	extPeer  = netip.MustParseAddr("192.168.0.1")
)

// startGuard runs a guard on fakes: nodePeer is a node with a LAN
// address, extPeer an external router.
func startGuard(t *testing.T) (*pathGuard, *fakeCutter, *fakePath, *prometheus.Registry) {
	t.Helper()
	c := &fakeCutter{}
	p := &fakePath{alive: map[netip.Addr]bool{}, rtt: 5 * time.Millisecond}
	peers := func(a netip.Addr) ([]netip.Addr, bool) {
		if a == nodePeer {
			return []netip.Addr{nodePeer, nodeLAN}, true
		}
		return nil, false
	}
	reg := prometheus.NewRegistry()
	g, err := newPathGuard(slog.New(slog.DiscardHandler), c, p.echo, peers, reg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = g.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-done
	})
	synctest.Wait()
	return g, c, p, reg
}

func wantCalls(t *testing.T, c *fakeCutter, want ...string) {
	t.Helper()
	if got := c.got(); !slices.Equal(got, want) {
		t.Errorf("speaker calls %q, want %q", got, want)
	}
}

// TestGuardKeepsRoutesWhilePathAnswers: a node peer declared down whose
// node answers (a frozen netd, an overlay cut with the LAN up) keeps its
// routes for as long as it answers, and is cut off the first time it
// does not, within one round of checks.
func TestGuardKeepsRoutesWhilePathAnswers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, c, p, reg := startGuard(t)
		p.set(nodeLAN, true) // the overlay is cut, the LAN answers
		g.changed(nodePeer, false)
		time.Sleep(5 * time.Second)
		synctest.Wait()
		wantCalls(t, c)
		if n := promtest.ToFloat64(g.kept.WithLabelValues(nodePeer.String())); n != 1 {
			t.Errorf("netd_bfd_down_routes_kept_total = %v, want 1 (one down)", n)
		}
		if p.asked < 20 {
			t.Errorf("path asked %d times in 5s, want one round every %v", p.asked, pathEvery)
		}
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
		p.set(nodeLAN, false)
		cut := time.Now()
		for len(c.got()) == 0 {
			time.Sleep(time.Millisecond)
		}
		if d := time.Since(cut); d > pathEvery+pathWait+pathWait {
			t.Errorf("cut off %v after the path died, want within a round (%v) and a check (%v)", d, pathEvery, pathWait)
		}
		wantCalls(t, c, "dead "+nodePeer.String())
		g.changed(nodePeer, true)
		wantCalls(t, c, "dead "+nodePeer.String(), "reachable "+nodePeer.String())
	})
}

// TestGuardCutsDeadPath: a node peer declared down that does not answer
// is cut off after one check; an Up afterwards re-admits it.
func TestGuardCutsDeadPath(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, c, _, _ := startGuard(t)
		start := time.Now()
		g.changed(nodePeer, false)
		for len(c.got()) == 0 {
			time.Sleep(time.Millisecond)
		}
		// Seen at most one step (1ms) late.
		if d := time.Since(start); d < pathWait || d > pathWait+time.Millisecond {
			t.Errorf("cut off after %v, want %v (one check)", d, pathWait)
		}
		wantCalls(t, c, "dead "+nodePeer.String())
	})
}

// TestGuardQuietChecksEarly: a peer that went quiet and does not answer
// is cut off the moment BFD declares it down; one that went quiet and
// answered is checked afresh at the Down.
func TestGuardQuietChecksEarly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, c, p, _ := startGuard(t)
		g.quiet(nodePeer)
		time.Sleep(200 * time.Millisecond) // BFD: quiet at 3/4, down at 4/4 of 800 ms
		synctest.Wait()
		g.changed(nodePeer, false)
		wantCalls(t, c, "dead "+nodePeer.String()) // at once, no new check
		g.changed(nodePeer, true)

		// Quiet, answered (a stall); the Down checks again, finds it
		// answering, keeps the routes.
		p.set(nodePeer, true)
		g.quiet(nodePeer)
		time.Sleep(200 * time.Millisecond)
		synctest.Wait()
		g.changed(nodePeer, false)
		time.Sleep(time.Second)
		synctest.Wait()
		wantCalls(t, c, "dead "+nodePeer.String(), "reachable "+nodePeer.String())

		// A quiet verdict is only good for the Down that follows it.
		g.changed(nodePeer, true)
		p.set(nodePeer, false)
		g.quiet(nodePeer)
		time.Sleep(200 * time.Millisecond)
		synctest.Wait() // a dead verdict, then packets came back: no Down
		time.Sleep(5 * time.Second)
		p.set(nodePeer, true)
		g.changed(nodePeer, false)
		time.Sleep(time.Second)
		synctest.Wait()
		wantCalls(t, c, "dead "+nodePeer.String(), "reachable "+nodePeer.String(), "reachable "+nodePeer.String())
	})
}

// TestGuardUpBeatsLateVerdict: an Up that comes while the check runs
// wins: no cut-off after it.
func TestGuardUpBeatsLateVerdict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, c, _, _ := startGuard(t)
		g.changed(nodePeer, false)
		time.Sleep(pathWait / 2)
		g.changed(nodePeer, true)
		time.Sleep(time.Second)
		synctest.Wait()
		wantCalls(t, c, "reachable "+nodePeer.String())
	})
}

// TestGuardExternalPeer: a router is cut off at once (netd does not know
// its forwarding path); quiet does nothing for it.
func TestGuardExternalPeer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		g, c, p, _ := startGuard(t)
		g.quiet(extPeer)
		g.changed(extPeer, false)
		g.changed(extPeer, true)
		synctest.Wait()
		wantCalls(t, c, "unreachable "+extPeer.String(), "reachable "+extPeer.String())
		if p.asked != 0 {
			t.Errorf("asked the path of an external peer %d times", p.asked)
		}
	})
}

// TestGuardedPaths: a node of the same site with LAN addresses on both
// ends is asked on both; one of another site on its overlay address; an
// external peer is no node.
func TestGuardedPaths(t *testing.T) {
	d, _ := newTestDaemon(t)
	paths := guardedPaths(d.policy.current)
	for _, tt := range []struct {
		peer string
		want string
	}{
		{"100.64.0.2", "[100.64.0.2 192.168.0.12] true"},
		{"100.64.0.4", "[100.64.0.4] true"},
		{"192.168.0.1", "[] false"},
	} {
		addrs, node := paths(netip.MustParseAddr(tt.peer))
		if got := fmt.Sprint(addrs, " ", node); got != tt.want {
			t.Errorf("paths of %s = %s, want %s", tt.peer, got, tt.want)
		}
	}
}
