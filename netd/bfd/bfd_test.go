package bfd

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"os"
	"sync"
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

// TestSessionsLoopback runs two servers on 127.0.0.1 and 127.0.0.2: they
// come up, one stopping is detected within the detection time, and the
// re-admission hold-down grows with repeated downs.
func TestSessionsLoopback(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: binds 127.0.0.2")
	}
	port := 40000 + rand.IntN(20000)
	a, b := netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	cfg := func(local netip.Addr, on func(netip.Addr, bool)) Config {
		return Config{Local: local, Port: port, TxInterval: 20 * time.Millisecond, Multiplier: 5,
			HoldDown: 300 * time.Millisecond, MaxHoldDown: 2 * time.Second, OnChange: on, Log: log}
	}
	var ea events
	sa, err := New(cfg(a, ea.add), nil)
	if err != nil {
		t.Fatal(err)
	}
	sa.SetPeers([]netip.Addr{b})
	ctxA, cancelA := context.WithCancel(t.Context())
	defer cancelA()
	go sa.Run(ctxA)

	// startB starts B and returns a function that stops it silently (its
	// transmit socket closed first, as if it froze or its link was cut).
	startB := func() (silent, clean func()) {
		sb, err := New(cfg(b, nil), nil)
		if err != nil {
			t.Fatal(err)
		}
		sb.SetPeers([]netip.Addr{a})
		ctx, cancel := context.WithCancel(t.Context())
		go sb.Run(ctx)
		silent = func() {
			sb.mu.Lock()
			if sb.tx != nil {
				sb.tx.Close()
			}
			sb.mu.Unlock()
			cancel()
		}
		return silent, cancel
	}
	admitted := func() bool { s := sa.States(); return len(s) == 1 && s[0].Admitted }
	_, cleanB := startB()
	testutil.Eventually(t, 10*time.Second, "first up", admitted)
	if got := ea.get(); len(got) != 1 || !got[0] {
		t.Fatalf("events after first up: %v, want [true]", got)
	}
	// A clean stop sends AdminDown: not a failure, nothing reported.
	cleanB()
	testutil.Eventually(t, 2*time.Second, "session down after AdminDown", func() bool { return sa.States()[0].State == "down" })
	if got := ea.get(); len(got) != 1 {
		t.Fatalf("events after the peer's AdminDown: %v, want only the first up", got)
	}
	stopB, _ := startB()
	testutil.Eventually(t, 10*time.Second, "up again", admitted)
	var holds []time.Duration
	for i := range 3 {
		stopB()
		d := testutil.Eventually(t, 2*time.Second, "down", func() bool { return !admitted() })
		t.Logf("flap %d: silent peer detected down after %v (detection time 100ms)", i, d)
		stopB, _ = startB()
		up := time.Now()
		testutil.Eventually(t, 10*time.Second, "re-admitted", func() bool { return sa.States()[0].State == "up" })
		testutil.Eventually(t, 10*time.Second, "re-admitted", admitted)
		holds = append(holds, time.Since(up))
		t.Logf("flap %d: re-admitted after %v", i, holds[i])
	}
	stopB()
	if holds[0] < 250*time.Millisecond || holds[2] < 2*holds[0] {
		t.Errorf("hold-downs %v: want at least 300ms, growing", holds)
	}
	if got := ea.get(); len(got) != 8 {
		t.Errorf("events %v: want up, up (after AdminDown, the peer came back), then 3x down,up", got)
	}
}
