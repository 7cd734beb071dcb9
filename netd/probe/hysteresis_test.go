package probe

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

// lan is an in-memory ICMP network for the prober: a probe to a target
// is answered after rtt if answer(seq) says so. It runs in a
// testing/synctest bubble, in virtual time.
type lan struct {
	mu        sync.Mutex
	answer    func(seq uint16) bool
	unreach   bool  // writes fail at once (no route)
	listenErr error // Listen fails
	listens   int
	rtt       time.Duration
}

func (l *lan) setAnswer(f func(seq uint16) bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.answer = f
}

func always(uint16) bool { return true }
func never(uint16) bool  { return false }

func (l *lan) listen(netip.Addr) (PacketConn, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.listens++
	if l.listenErr != nil {
		return nil, l.listenErr
	}
	return newMemConn(l.answerFor), nil
}

// answerFor is the lan's answer to a probe with seq: after rtt if answer
// says so; with unreach the write fails.
func (l *lan) answerFor(_ netip.Addr, seq uint16) (time.Duration, bool, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.unreach {
		return 0, false, errors.New("network is unreachable")
	}
	return l.rtt, l.answer != nil && l.answer(seq), nil
}

var (
	src  = netip.MustParseAddr("192.168.0.11")
	peer = netip.MustParseAddr("192.168.0.12")
)

// startProber runs a prober every 200ms (the tests' times follow it),
// with the default counts (down after 3
// misses, up after 3 answers) on l, probing peer; stop ends it.
func startProber(t *testing.T, l *lan) (*Prober, *prometheus.Registry, func()) {
	t.Helper()
	reg := prometheus.NewRegistry()
	p, err := New(slog.New(slog.DiscardHandler), reg, Options{Interval: 200 * time.Millisecond, Listen: l.listen})
	if err != nil {
		t.Fatal(err)
	}
	p.SetTargets(src, []Target{{Name: "ultra", Addr: peer}})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = p.Run(ctx)
	}()
	return p, reg, func() {
		cancel()
		<-done
	}
}

// at sleeps until d after start (virtual time) and lets the prober
// settle.
func at(start time.Time, d time.Duration) {
	time.Sleep(time.Until(start.Add(d)))
	synctest.Wait()
}

func changed(p *Prober) bool {
	select {
	case <-p.Changes():
		return true
	default:
		return false
	}
}

// TestDownAfterMisses: a new path starts up; while the peer answers it
// stays up; once the peer goes silent, the path goes down at the third
// miss (a probe counts as missed two intervals after it was sent), not
// before, and the change is signalled and counted.
func TestDownAfterMisses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{answer: always, rtt: time.Millisecond}
		start := time.Now()
		p, reg, stop := startProber(t, l)
		defer stop()
		if !p.Up(peer) {
			t.Fatal("a new target starts down, want up (optimistic)")
		}
		at(start, 1100*time.Millisecond) // probes at 0, 200 ... 1000 answered
		if s := p.Status(); !s[0].Up || s[0].LastRTT != "1ms" || s[0].Flaps != 0 || changed(p) {
			t.Fatalf("status while the peer answers: %+v", s)
		}
		l.setAnswer(never) // first unanswered probe: 1200ms
		at(start, 1999*time.Millisecond)
		if !p.Up(peer) {
			t.Fatal("down before the third miss")
		}
		at(start, 2000*time.Millisecond) // misses counted at 1600, 1800, 2000
		if p.Up(peer) {
			t.Fatal("still up at the third miss")
		}
		if !changed(p) {
			t.Error("no change signalled for down")
		}
		if s := p.Status(); s[0].Flaps != 1 || !s[0].Since.Equal(start.Add(2*time.Second)) {
			t.Errorf("status after down: %+v", s[0])
		}
		if got := promtest.ToFloat64(p.up.WithLabelValues("ultra")); got != 0 {
			t.Errorf("netd_path_lan_up = %v, want 0", got)
		}
		if n, err := promtest.GatherAndCount(reg, "netd_path_lan_transitions_total"); err != nil || n != 1 {
			t.Errorf("transitions: %d series, %v", n, err)
		}
		if p.Up(netip.MustParseAddr("192.168.0.99")) {
			t.Error("an address that is not probed must be reported down")
		}
	})
}

// TestUpAfterAnswersInARow: a down path comes back only after 3 answers
// in a row; a late miss resets the count.
func TestUpAfterAnswersInARow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{answer: never, rtt: time.Millisecond}
		start := time.Now()
		p, _, stop := startProber(t, l)
		defer stop()
		at(start, 900*time.Millisecond) // misses at 400, 600, 800: down
		if p.Up(peer) || !changed(p) {
			t.Fatal("not down after three misses")
		}
		l.setAnswer(always) // from the probe at 1000ms
		// The probe of 800ms is counted as missed at 1200ms, after the
		// answer to 1000ms: answers in a row at 1201, 1401 and 1601.
		at(start, 1600*time.Millisecond)
		if p.Up(peer) {
			t.Fatal("up before three answers in a row")
		}
		at(start, 1601*time.Millisecond)
		if !p.Up(peer) || !changed(p) {
			t.Fatal("not up (or not signalled) after three answers in a row")
		}
		if s := p.Status(); s[0].Flaps != 2 {
			t.Errorf("flaps = %d, want 2 (down, up)", s[0].Flaps)
		}
	})
}

// TestHysteresisHoldsAgainstLoss: two lost answers in a row never take an
// up path down, and two answers in a row never bring a down path up.
func TestHysteresisHoldsAgainstLoss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{answer: always, rtt: time.Millisecond}
		start := time.Now()
		p, _, stop := startProber(t, l)
		defer stop()
		at(start, 1100*time.Millisecond)
		l.setAnswer(func(seq uint16) bool { return seq%3 == 0 })
		at(start, 20*time.Second)
		if s := p.Status(); !s[0].Up || s[0].Flaps != 0 {
			t.Fatalf("one answer in three: %+v, want up without a flap", s[0])
		}
		l.setAnswer(never)
		at(start, 22*time.Second)
		if p.Up(peer) {
			t.Fatal("not down after a silence")
		}
		l.setAnswer(func(seq uint16) bool { return seq%3 != 0 })
		at(start, 42*time.Second)
		if s := p.Status(); s[0].Up || s[0].Flaps != 1 {
			t.Fatalf("two answers in three: %+v, want down without a flap", s[0])
		}
	})
}

// TestSocketFailure: without a socket nothing is verified: every path is
// down (traffic takes the overlay) and the socket is retried every
// second; unreachable sends count as misses at once.
func TestSocketFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{listenErr: errors.New("operation not permitted")}
		start := time.Now()
		p, _, stop := startProber(t, l)
		defer stop()
		at(start, 2500*time.Millisecond)
		if p.Up(peer) {
			t.Fatal("up without a socket")
		}
		l.mu.Lock()
		listens := l.listens
		l.listenErr, l.answer, l.rtt = nil, always, time.Millisecond
		l.mu.Unlock()
		if listens != 3 {
			t.Errorf("%d socket attempts in 2.5s, want 3 (at 0, 1s, 2s)", listens)
		}
		at(start, 4*time.Second)
		if !p.Up(peer) {
			t.Fatal("not up after the socket came back and the peer answered")
		}
		l.mu.Lock()
		l.unreach = true
		l.mu.Unlock()
		down := time.Now()
		at(start, 4*time.Second+600*time.Millisecond) // sends at 4.0(+), 4.2, 4.4, 4.6
		if p.Up(peer) {
			t.Errorf("up after three unreachable sends since %v", down.Sub(start))
		}
	})
}

// TestSetTargets: a target removed loses its metric; a new one starts up;
// a kept one keeps its state.
func TestSetTargets(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{answer: never}
		start := time.Now()
		p, reg, stop := startProber(t, l)
		defer stop()
		at(start, time.Second)
		if p.Up(peer) {
			t.Fatal("not down")
		}
		other := netip.MustParseAddr("192.168.0.13")
		p.SetTargets(src, []Target{{Name: "ultra", Addr: peer}, {Name: "old", Addr: other}})
		synctest.Wait()
		if p.Up(peer) || !p.Up(other) {
			t.Errorf("after adding old: ultra up=%v (want kept down), old up=%v (want up)", p.Up(peer), p.Up(other))
		}
		p.SetTargets(src, []Target{{Name: "old", Addr: other}})
		synctest.Wait()
		if len(p.Status()) != 1 {
			t.Errorf("status %v after removing ultra", p.Status())
		}
		if n, err := promtest.GatherAndCount(reg, "netd_path_lan_up"); err != nil || n != 1 {
			t.Errorf("netd_path_lan_up: %d series (want old only), %v", n, err)
		}
	})
}

// sink is a PacketConn that accepts every probe and never answers.
type sink struct{}

func (sink) ReadFrom([]byte) (int, net.Addr, error)    { return 0, nil, net.ErrClosed }
func (sink) WriteTo(b []byte, _ net.Addr) (int, error) { return len(b), nil }
func (sink) Close() error                              { return nil }

// TestStallIsNotAMiss: when netd itself stalls (a loaded CPU), the round
// after the stall comes late while the replies to the probes sent before
// it still wait for the receiver; they are not counted as misses then,
// only once a whole round has passed. A peer that is really silent is
// still found after DownAfter rounds.
func TestStallIsNotAMiss(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p, err := New(slog.New(slog.DiscardHandler), prometheus.NewRegistry(), Options{})
		if err != nil {
			t.Fatal(err)
		}
		p.SetTargets(src, []Target{{Name: "ultra", Addr: peer}})
		misses := func() int {
			p.mu.Lock()
			defer p.mu.Unlock()
			return p.targets[peer].misses
		}
		p.sendAll(sink{}) // seq 1
		time.Sleep(2 * time.Second)
		p.sendAll(sink{}) // seq 2, late: seq 1 is 2s old but its reply may be unread
		if m := misses(); m != 0 {
			t.Fatalf("%d misses counted in the first round after a stall", m)
		}
		p.reply(peer, 1) // the receiver catches up
		p.reply(peer, 2)
		time.Sleep(200 * time.Millisecond)
		p.sendAll(sink{})
		if m := misses(); m != 0 || !p.Up(peer) {
			t.Fatalf("after the stall: %d misses, up %v", m, p.Up(peer))
		}
		// Silent from here: seq 3 onwards is never answered.
		for range 5 {
			time.Sleep(200 * time.Millisecond)
			p.sendAll(sink{})
		}
		if p.Up(peer) {
			t.Fatalf("still up after %d misses", misses())
		}
	})
}

// TestTargetChangeKeepsSocket: SetTargets before Run (the daemon's order)
// and a target added while running keep the one socket, so no reply in
// flight is lost and no miss is counted; a new source opens a new one.
func TestTargetChangeKeepsSocket(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		l := &lan{answer: always, rtt: 150 * time.Millisecond}
		p, _, stop := startProber(t, l)
		defer stop()
		start := time.Now()
		at(start, time.Second)
		other := netip.MustParseAddr("192.168.0.13")
		p.SetTargets(src, []Target{{Name: "ultra", Addr: peer}, {Name: "old", Addr: other}})
		at(start, 2*time.Second)
		p.mu.Lock()
		m := p.targets[peer].misses + p.targets[other].misses
		p.mu.Unlock()
		l.mu.Lock()
		listens := l.listens
		l.mu.Unlock()
		if s := p.Status(); m != 0 || listens != 1 || !s[0].Up || !s[1].Up || s[0].Flaps+s[1].Flaps != 0 {
			t.Fatalf("misses %d, sockets %d, status %+v", m, listens, s)
		}
		p.SetTargets(netip.MustParseAddr("192.168.0.21"), []Target{{Name: "ultra", Addr: peer}})
		at(start, 3*time.Second)
		l.mu.Lock()
		listens = l.listens
		l.mu.Unlock()
		if listens != 2 {
			t.Fatalf("%d sockets after a new source, want 2", listens)
		}
	})
}
