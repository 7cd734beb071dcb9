package bfd

import (
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

var fast = Config{TxInterval: 100 * time.Millisecond, Multiplier: 5, HoldDown: time.Second, MaxHoldDown: 4 * time.Second}

// TestUpThenFastAndDetection: two servers come up within the slow start
// and report it once; once up they send every TxInterval (jittered to
// 75-100%); a silent peer is reported down after exactly the detection
// time (multiplier x interval) since its last packet.
func TestUpThenFastAndDetection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire()
		start := time.Now()
		a := startNode(t, w, addrA, fast, addrB)
		b := startNode(t, w, addrB, fast, addrA)
		upAt := until(t, 3*time.Second, "a admits b", func() bool { return a.state().Admitted })
		if got := a.changes(); len(got) != 1 || !got[0].up {
			t.Fatalf("a reported %v, want one up", got)
		}
		t.Logf("up after %v", upAt.Sub(start))

		// Fast: 10 s up means 100-134 packets from a (interval 75-100 ms).
		sent0 := promtest.ToFloat64(a.srv.metrics.sent)
		time.Sleep(10 * time.Second)
		if n := promtest.ToFloat64(a.srv.metrics.sent) - sent0; n < 100 || n > 134 {
			t.Errorf("a sent %v packets in 10s up, want 100-134 (TxInterval 100ms, jitter 75-100%%)", n)
		}
		if got := a.changes(); len(got) != 1 {
			t.Fatalf("a reported %v during 10s of a steady session", got)
		}
		if q := a.quiets(); len(q) != 0 {
			t.Fatalf("a called OnQuiet %d times during 10s of a steady session", len(q))
		}

		// Silent: b's packets stop arriving. a's detection timer was reset
		// by b's last packet at most one interval before the cut.
		w.setCut(addrB, true)
		cutAt := time.Now()
		downAt := until(t, 2*time.Second, "a reports b down", func() bool { return len(a.changes()) == 2 })
		// Seen up to 1ms late (until's step).
		if d := downAt.Sub(cutAt); d < 400*time.Millisecond || d > 501*time.Millisecond {
			t.Errorf("silent peer reported down %v after the cut, want 400-500ms (detection 5 x 100ms since its last packet)", d)
		}
		if c := a.changes()[1]; c.up {
			t.Errorf("second change %v, want down", c)
		}
		// Quiet once, three quarters into the detection time: 125 ms
		// before the Down.
		if q := a.quiets(); len(q) != 1 || downAt.Sub(q[0]) < 124*time.Millisecond || downAt.Sub(q[0]) > 126*time.Millisecond {
			t.Errorf("OnQuiet at %v, want once, 125ms before the down at %v", q, downAt)
		}
		if s := a.state(); s.State != "down" || s.Admitted || s.Downs != 1 {
			t.Errorf("a's state after the detection: %+v", s)
		}
		w.setCut(addrB, false)
		a.stop()
		b.stop()
	})
}

// TestSlowWhileDown: a session that is not up sends one packet a second
// (75-100% jittered), as RFC 5880 6.8.3 asks.
func TestSlowWhileDown(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire()
		a := startNode(t, w, addrA, fast, addrB) // b never answers
		time.Sleep(20 * time.Second)
		if n := promtest.ToFloat64(a.srv.metrics.sent); n < 20 || n > 28 {
			t.Errorf("%v packets in 20s without a peer, want 20-28 (1/s, jitter 75-100%%)", n)
		}
		if s := a.state(); s.State != "down" || len(a.changes()) != 0 {
			t.Errorf("state %+v, changes %v", s, a.changes())
		}
		a.stop()
	})
}

// TestAdminDownIsNotAFailure: a peer that stops cleanly sends AdminDown;
// the session goes down without a report and without counting for the
// dampening, so the peer's return is admitted at once.
func TestAdminDownIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire()
		a := startNode(t, w, addrA, fast, addrB)
		b := startNode(t, w, addrB, fast, addrA)
		until(t, 3*time.Second, "up", func() bool { return a.state().Admitted })
		b.stop()
		if s := a.state(); s.State != "down" || s.Admitted || s.Downs != 0 {
			t.Errorf("a's state after b's clean stop: %+v, want down, not admitted, no down counted", s)
		}
		if got := a.changes(); len(got) != 1 {
			t.Errorf("a reported %v, want only the first up", got)
		}
		b = startNode(t, w, addrB, fast, addrA)
		until(t, 3*time.Second, "up again", func() bool { return a.state().Admitted })
		if got := a.changes(); len(got) != 2 || !got[1].up {
			t.Errorf("a reported %v, want up, up (no hold-down after an AdminDown)", got)
		}
		a.stop()
		b.stop()
	})
}

// TestRestartedPeerIsNotAFailure: a peer that restarts without a clean
// stop (kill -9: no AdminDown) and is back before its old session timed
// out says Down without a diagnostic: it is alive, so no down is reported
// or counted, and its return is admitted at once.
func TestRestartedPeerIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire()
		a := startNode(t, w, addrA, fast, addrB)
		b := startNode(t, w, addrB, fast, addrA)
		until(t, 3*time.Second, "up", func() bool { return a.state().Admitted })
		w.setCut(addrB, true) // b's AdminDown is lost: a crash
		b.cancel()
		<-b.done
		w.setCut(addrB, false)
		b = startNode(t, w, addrB, fast, addrA) // back within the detection time
		until(t, 3*time.Second, "a sees the new session", func() bool { return a.state().Changes >= 3 })
		until(t, 3*time.Second, "up again", func() bool { return a.state().Admitted })
		for _, c := range a.changes() {
			if !c.up {
				t.Errorf("a reported %v, want only ups (a restarted peer is no failure)", a.changes())
				break
			}
		}
		if s := a.state(); s.Downs != 0 {
			t.Errorf("downs = %d, want 0", s.Downs)
		}
		a.stop()
		b.stop()
	})
}

// TestHoldDownDoubles: the first Up after a single failure is admitted at
// once; after each further failure in the last minute the re-admission
// waits HoldDown, doubled per recent down, up to MaxHoldDown; downs older
// than a minute are forgotten. The session itself comes up at once; only
// the report waits.
func TestHoldDownDoubles(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire()
		a := startNode(t, w, addrA, fast, addrB)
		b := startNode(t, w, addrB, fast, addrA)
		until(t, 3*time.Second, "up", func() bool { return a.state().Admitted })
		flap := func(i int) time.Duration {
			t.Helper()
			w.setCut(addrB, true)
			until(t, 2*time.Second, "down", func() bool { return a.state().State == "down" })
			w.setCut(addrB, false)
			upAt := until(t, 5*time.Second, "session up", func() bool { return a.state().State == "up" })
			admittedAt := until(t, 10*time.Second, "admitted", func() bool { return a.state().Admitted })
			return admittedAt.Sub(upAt)
		}
		for i, want := range []time.Duration{0, time.Second, 2 * time.Second, 4 * time.Second, 4 * time.Second} {
			// Both ends are seen up to 1ms late (until's step).
			if got := flap(i); got < want-time.Millisecond || got > want+time.Millisecond {
				t.Errorf("flap %d: re-admitted %v after the session came up, want %v", i, got, want)
			}
		}
		time.Sleep(dampWindow + time.Second)
		if got := flap(5); got > time.Millisecond {
			t.Errorf("flap after a quiet minute: re-admitted after %v, want at once (old downs forgotten)", got)
		}
		if got := flap(6); got < time.Second-time.Millisecond || got > time.Second+time.Millisecond {
			t.Errorf("second flap after a quiet minute: re-admitted after %v, want %v", got, time.Second)
		}
		got := a.changes()
		if len(got) != 1+2*7 {
			t.Errorf("%d changes, want the first up and 7 x (down, up)", len(got))
		}
		if s := a.state(); s.Downs != 7 {
			t.Errorf("downs = %d, want 7", s.Downs)
		}
		a.stop()
		b.stop()
	})
}

// TestStallIsNotAFailure: with the default timers (100ms x 8), the peer
// silent for 600ms (a stalled netd: its first packet after the stall
// comes within one interval) is never declared down, whatever the phase
// of the stall against the packets; silent for good, it is declared down
// 700-800ms after the silence began (800ms after its last packet).
func TestStallIsNotAFailure(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire()
		a := startNode(t, w, addrA, Config{}, addrB)
		b := startNode(t, w, addrB, Config{}, addrA)
		until(t, 3*time.Second, "up", func() bool { return a.state().Admitted && b.state().Admitted })
		for i := range 50 {
			time.Sleep(time.Duration(i*7%100) * time.Millisecond) // every phase against the 75-100ms packets
			w.setCut(addrB, true)
			time.Sleep(600 * time.Millisecond)
			w.setCut(addrB, false)
			time.Sleep(300 * time.Millisecond)
		}
		if ca, cb := a.changes(), b.changes(); len(ca) != 1 || len(cb) != 1 {
			t.Fatalf("600ms stalls reported: a %v, b %v; want only the first up", ca, cb)
		}
		w.setCut(addrB, true)
		cutAt := time.Now()
		downAt := until(t, 2*time.Second, "a reports b down", func() bool { return len(a.changes()) == 2 })
		if d := downAt.Sub(cutAt); d < 700*time.Millisecond || d > 801*time.Millisecond {
			t.Errorf("silent peer reported down %v after the cut, want 700-800ms (8 x 100ms since its last packet)", d)
		}
		w.setCut(addrB, false)
		healed := time.Now()
		upAt := until(t, 3*time.Second, "a re-admits b", func() bool { return len(a.changes()) == 3 })
		t.Logf("silent peer down after %v; re-admitted %v after the cut ended (both ends down: slow packets)", downAt.Sub(cutAt), upAt.Sub(healed))
		a.stop()
		b.stop()
	})
}

// TestDropsWrongTTL: a packet that did not arrive with TTL 255 may come
// from beyond the link (RFC 5881 5): dropped and counted, no session.
func TestDropsWrongTTL(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire()
		w.setTTL(254)
		a := startNode(t, w, addrA, fast, addrB)
		b := startNode(t, w, addrB, fast, addrA)
		time.Sleep(10 * time.Second)
		if s := a.state(); s.State != "down" {
			t.Errorf("session %+v with TTL 254 packets, want down", s)
		}
		if n := promtest.ToFloat64(a.srv.metrics.dropped); n < 5 {
			t.Errorf("dropped = %v, want every packet of b counted", n)
		}
		a.stop()
		b.stop()
	})
}

// TestSetPeersRemoves: removing a peer ends its session (the peer sees
// AdminDown, not a failure) and its metrics; adding it back starts a new
// session.
func TestSetPeersRemoves(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire()
		a := startNode(t, w, addrA, fast, addrB)
		b := startNode(t, w, addrB, fast, addrA)
		until(t, 3*time.Second, "up", func() bool { return b.state().Admitted })
		a.srv.SetPeers(nil)
		until(t, time.Second, "b sees the session down", func() bool { return b.state().State == "down" })
		if len(a.srv.States()) != 0 {
			t.Errorf("a still has sessions: %v", a.srv.States())
		}
		if got := b.changes(); len(got) != 1 || b.state().Downs != 0 {
			t.Errorf("b reported %v (downs %d) after a removed it, want only the up", got, b.state().Downs)
		}
		if n, err := promtest.GatherAndCount(a.reg, "netd_bfd_session_up"); err != nil || n != 0 {
			t.Errorf("a's session gauge: %d series, %v", n, err)
		}
		a.srv.SetPeers([]netip.Addr{addrB})
		until(t, 3*time.Second, "up again", func() bool { return a.state().Admitted && b.state().Admitted })
		a.stop()
		b.stop()
	})
}

// TestNeverUpWarning: a session without a single packet from its peer gets
// a warning naming the peer, the time and the likely cause after
// WarnAfter, logged once and exported as netd_bfd_session_never_up; once
// the peer answers the session comes up, the warning goes, and the status
// shows both ends' timers and the state changes.
func TestNeverUpWarning(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		w := newWire()
		var log syncBuffer
		cfg := fast
		cfg.Log = slog.New(slog.NewTextHandler(&log, nil))
		a := startNode(t, w, addrA, cfg, addrB)
		time.Sleep(29 * time.Second)
		synctest.Wait()
		if s := a.state(); s.Warning != "" || s.EverUp {
			t.Fatalf("warning before WarnAfter: %+v", s)
		}
		time.Sleep(2 * time.Second)
		synctest.Wait()
		s := a.state()
		want := "no BFD packets received from 100.64.0.2 for 30s: is UDP 3784 allowed"
		if !strings.Contains(s.Warning, want) || s.EverUp || s.State != "down" || !s.LastReceived.IsZero() {
			t.Fatalf("state after 31s of silence: %+v, want warning %q", s, want)
		}
		if v := promtest.ToFloat64(gaugeVec(t, a.reg, "netd_bfd_session_never_up")); v != 1 {
			t.Errorf("netd_bfd_session_never_up = %v, want 1", v)
		}
		time.Sleep(time.Minute)
		synctest.Wait()
		if n := strings.Count(log.String(), "bfd session never came up"); n != 1 {
			t.Errorf("warning logged %d times, want once:\n%s", n, log.String())
		}

		b := startNode(t, w, addrB, fast, addrA)
		until(t, 3*time.Second, "up", func() bool { return a.state().Admitted })
		s = a.state()
		if s.Warning != "" || !s.EverUp || s.Changes < 2 || s.LastChange.IsZero() || s.LastReceived.IsZero() {
			t.Errorf("state once up: %+v", s)
		}
		// Once up, both ends run the fast timers (after the poll sequence).
		until(t, 2*time.Second, "fast timers", func() bool {
			s := a.state()
			return s.Local.DesiredMinTx == Duration(fast.TxInterval) && s.Remote.DesiredMinTx == Duration(fast.TxInterval)
		})
		if s := a.state(); s.Remote.Multiplier != 5 || s.Local.RequiredMinRx != Duration(100*time.Millisecond) {
			t.Errorf("timers: local %+v remote %+v", s.Local, s.Remote)
		}
		if v := promtest.ToFloat64(gaugeVec(t, a.reg, "netd_bfd_session_never_up")); v != 0 {
			t.Errorf("netd_bfd_session_never_up = %v once up, want 0", v)
		}
		if v := promtest.ToFloat64(gaugeVec(t, a.reg, "netd_bfd_session_state")); v != 3 {
			t.Errorf("netd_bfd_session_state = %v once up, want 3", v)
		}

		// A detection failure: the diagnostic says why.
		w.setCut(addrB, true)
		until(t, 2*time.Second, "down", func() bool { return a.state().State == "down" })
		if s := a.state(); s.Diag != "control detection time expired" || s.Warning != "" {
			t.Errorf("after a detection failure: %+v", s)
		}
		if v := promtest.ToFloat64(gaugeVec(t, a.reg, "netd_bfd_state_changes_total")); v < 3 {
			t.Errorf("netd_bfd_state_changes_total = %v, want >= 3 (down->init->up->down)", v)
		}
		w.setCut(addrB, false)
		a.stop()
		b.stop()
	})
}

// gaugeVec gathers the one series of name from reg as a collector
// promtest.ToFloat64 can read.
func gaugeVec(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.GetMetric()) == 1 {
			m := mf.GetMetric()[0]
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x", Help: "x"}, func() float64 { return v })
		}
	}
	t.Fatalf("no single series %s", name)
	return nil
}
