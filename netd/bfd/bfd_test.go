package bfd

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
)

func TestPacketRoundTrip(t *testing.T) {
	p := packet{diag: diagDetectExpired, state: Up, poll: true, detectMult: 3, myDiscr: 7, yourDiscr: 9,
		desiredMinTx: 100 * time.Millisecond, requiredMinRx: 50 * time.Millisecond}
	got, err := parse(p.marshal())
	if err != nil {
		t.Fatal(err)
	}
	if got != p {
		t.Fatalf("round trip: got %+v, want %+v", got, p)
	}
	bad := p.marshal()
	bad[0] = 2 << 5
	if _, err := parse(bad); err == nil {
		t.Error("version 2 accepted")
	}
	p.yourDiscr = 0
	if _, err := parse(p.marshal()); err == nil {
		t.Error("your discriminator 0 in state up accepted")
	}
	p.state, p.detectMult = Down, 0
	if _, err := parse(p.marshal()); err == nil {
		t.Error("detect multiplier 0 accepted")
	}
}

type events struct {
	mu sync.Mutex
	ev []bool
}

func (e *events) add(_ netip.Addr, up bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.ev = append(e.ev, up)
}

func (e *events) get() []bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]bool(nil), e.ev...)
}

// TestSessionsLoopback runs two servers over real UDP sockets on
// 127.0.0.1 and 127.0.0.2, on ports the kernel chooses: they come up, a
// peer that stops cleanly (AdminDown) is not reported, a silent peer is
// reported down, and a restarted peer is re-admitted at once after one
// failure and after a hold-down that grows with repeated downs. The exact
// timers are tested in virtual time (statemachine_test.go); this test adds
// the sockets: the TTL, the source ports, the discriminators across a
// restart.
func TestSessionsLoopback(t *testing.T) {
	testutil.NeedRoot(t, "binds 127.0.0.2")
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	var logA syncBuffer
	logB := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := func(local netip.Addr, on func(netip.Addr, bool), log *slog.Logger) Config {
		return Config{Local: local, TxInterval: 20 * time.Millisecond, Multiplier: 5,
			HoldDown: 300 * time.Millisecond, MaxHoldDown: 2 * time.Second, OnChange: on, Log: log}
	}
	// A listens on a port the kernel chose and sends to B's, which changes
	// with every start of B.
	ca, err := listenUDP(t.Context(), a, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	toB := &redirect{udpConn: ca}
	var ea events
	sa, err := New(cfg(a, ea.add, slog.New(slog.NewTextHandler(&logA, nil))), nil)
	if err != nil {
		t.Fatal(err)
	}
	sa.listen = func(context.Context) (conn, error) { return toB, nil }
	sa.SetPeers([]netip.Addr{b})
	ctxA, cancelA := context.WithCancel(t.Context())
	doneA := make(chan error, 1)
	go func() { doneA <- sa.Run(ctxA) }()
	t.Cleanup(func() {
		cancelA()
		<-doneA
	})

	// startB starts B and returns a function that stops it silently (its
	// sending socket closed first, as if it froze or its link was cut)
	// and one that stops it cleanly; both wait until B's Run returned.
	startB := func() (silent, clean func()) {
		sb, err := New(cfg(b, nil, logB), nil)
		if err != nil {
			t.Fatal(err)
		}
		sb.listen = func(ctx context.Context) (conn, error) {
			cb, err := listenUDP(ctx, b, 0, ca.localPort())
			if err != nil {
				return nil, err
			}
			toB.port.Store(uint32(cb.localPort()))
			return cb, nil
		}
		sb.SetPeers([]netip.Addr{a})
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- sb.Run(ctx) }()
		clean = sync.OnceFunc(func() {
			cancel()
			<-done
		})
		silent = func() {
			sb.mu.Lock()
			if sb.conn != nil {
				sb.conn.closeWrite()
			}
			sb.mu.Unlock()
			clean()
		}
		t.Cleanup(clean)
		return silent, clean
	}
	admitted := func() bool { s := sa.States(); return len(s) == 1 && s[0].Admitted }
	_, cleanB := startB()
	testutil.Eventually(t, 10*time.Second, "first up", admitted)
	if got := ea.get(); len(got) != 1 || !got[0] {
		t.Fatalf("events after first up: %v, want [true]", got)
	}
	// A clean stop sends AdminDown: not a failure, nothing reported.
	cleanB()
	testutil.Eventually(t, 10*time.Second, "session down after AdminDown", func() bool { return sa.States()[0].State == "down" })
	if got := ea.get(); len(got) != 1 {
		t.Fatalf("events after the peer's AdminDown: %v, want only the first up", got)
	}
	stopB, _ := startB()
	testutil.Eventually(t, 10*time.Second, "up again", admitted)
	for i := range 3 {
		stopB()
		d := testutil.Eventually(t, 10*time.Second, "down", func() bool { return !admitted() })
		t.Logf("flap %d: silent peer detected down after %v (detection time 100ms)", i, d)
		stopB, _ = startB()
		d = testutil.Eventually(t, 10*time.Second, "re-admitted", admitted)
		t.Logf("flap %d: re-admitted %v after the restart", i, d)
	}
	stopB()
	if got := ea.get(); len(got) != 8 {
		t.Errorf("events %v: want up, up (after AdminDown, the peer came back), then 3x down,up", got)
	}
	// The hold-downs A applied, as it logged them: none after the first
	// failure, then doubling from 300ms.
	var holds []string
	for _, l := range strings.Split(logA.String(), "\n") {
		if strings.Contains(l, "holding before re-admission") {
			_, h, _ := strings.Cut(l, "holdDown=")
			holds = append(holds, strings.Fields(h)[0])
		}
	}
	if want := []string{"300ms", "600ms"}; !slices.Equal(holds, want) {
		t.Errorf("hold-downs %v, want %v", holds, want)
	}
}

// redirect sends to a port that the test changes as the peer restarts.
type redirect struct {
	*udpConn
	port atomic.Uint32
}

func (r *redirect) write(b []byte, peer netip.Addr) error {
	_, err := r.tx.WriteToUDPAddrPort(b, netip.AddrPortFrom(peer, uint16(r.port.Load())))
	return err
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
