package bgp

import (
	"net/netip"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ducksnest/netd/internal/testutil"

	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/policy/desired"
)

// syncFixture is a state with one peer p (overlay 127.0.0.2, LAN
// 192.168.0.12) configured 11 s before now, graceful restart 120 s, settle
// bound 10 s: past the old fixed bound, well within the restart time.
func syncFixture(rt peerRT, expect ...string) (*state, time.Time) {
	now := time.Date(2026, 1, 1, 0, 0, 11, 0, time.UTC)
	st := &state{}
	st.init()
	p := desired.Peer{Name: "p", Kind: desired.PeerNode, Address: netip.MustParseAddr("127.0.0.2"), LANAddr: netip.MustParseAddr("192.168.0.12")}
	st.cfg = desired.Speaker{ASN: testASN, GracefulRestart: desired.GracefulRestart{Enabled: true, RestartTime: 120 * time.Second}, Peers: []desired.Peer{p}}
	st.bound = 10 * time.Second
	if rt.added.IsZero() {
		rt.added = now.Add(-11 * time.Second)
	}
	if rt.since.IsZero() {
		rt.since = rt.added
	}
	st.peers[p.Address] = &rt
	for _, e := range expect {
		st.expect[netip.MustParseAddr(e)] = true
	}
	return st, now
}

func TestSyncStatus(t *testing.T) {
	const overlay, lan = "127.0.0.2", "192.168.0.12"
	at := func(d time.Duration) time.Time { return time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).Add(d) }
	for _, c := range []struct {
		name   string
		rt     peerRT
		expect []string
		noGR   bool
		want   bool
		next   time.Time
	}{
		{name: "up with End-of-RIB", rt: peerRT{established: true, eor: true}, want: true},
		{name: "up, restart caps not read yet", rt: peerRT{established: true}, want: false},
		{name: "up without graceful restart, settled", rt: peerRT{established: true, grKnown: true}, want: true},
		{name: "up without graceful restart, just up", rt: peerRT{established: true, grKnown: true, since: at(5 * time.Second)}, next: at(15 * time.Second)},
		{name: "up with graceful restart, End-of-RIB overdue within its restart time",
			rt: peerRT{established: true, grKnown: true, grNegotiated: true, peerRestart: 30 * time.Second}, next: at(30 * time.Second)},
		{name: "down, not coming back: the settle bound", rt: peerRT{}, want: true},
		{name: "down, coming back (overlay next hop): its restart time since start", rt: peerRT{}, expect: []string{overlay}, next: at(120 * time.Second)},
		{name: "down, coming back (LAN next hop)", rt: peerRT{}, expect: []string{lan}, next: at(120 * time.Second)},
		{name: "coming back, went down after being up: since it went down, its advertised time",
			rt: peerRT{everUp: true, grKnown: true, grNegotiated: true, peerRestart: 60 * time.Second, since: at(5 * time.Second)}, expect: []string{overlay}, next: at(65 * time.Second)},
		{name: "coming back, restart time passed", rt: peerRT{everUp: true, since: at(-200 * time.Second)}, expect: []string{overlay}, want: true},
		{name: "coming back, no graceful restart configured: the settle bound", rt: peerRT{}, expect: []string{overlay}, noGR: true, want: true},
		{name: "someone else coming back", rt: peerRT{}, expect: []string{"127.0.0.9"}, want: true},
	} {
		st, now := syncFixture(c.rt, c.expect...)
		if c.noGR {
			st.cfg.GracefulRestart = desired.GracefulRestart{}
		}
		ok, next := st.syncStatus(now)
		if ok != c.want || !next.Equal(c.next) {
			t.Errorf("%s: synced %v, next %v; want %v, %v", c.name, ok, next, c.want, c.next)
		}
	}
	var never state
	never.init()
	if ok, _ := never.syncStatus(time.Now()); ok {
		t.Error("synced before the first Reconcile")
	}
}

// Synced turns true by a deadline alone, and Changes is poked then: in
// virtual time, the restart time of a peer that never comes back.
func TestSyncDeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(bgptest.Logger(t), nil)
		s.MarkRestarting(netip.MustParseAddr("127.0.0.2"))
		p := desired.Peer{Name: "p", Kind: desired.PeerNode, Address: netip.MustParseAddr("127.0.0.2")}
		cfg := desired.Speaker{ASN: testASN, GracefulRestart: desired.GracefulRestart{Enabled: true, RestartTime: 120 * time.Second}, Peers: []desired.Peer{p}}
		s.st.setConfig(cfg, 10*time.Second)
		start := time.Now()
		s.checkSync()
		time.Sleep(119 * time.Second)
		if s.Synced() {
			t.Fatal("synced before the restart time of a peer that is coming back")
		}
		select {
		case <-s.Changes():
			t.Fatal("changes poked before anything changed")
		default:
		}
		<-s.Changes()
		if d := time.Since(start); d < 120*time.Second || !s.Synced() {
			t.Errorf("poked after %v, synced %v; want at 120s, synced", d, s.Synced())
		}
		s.st.reset() // stops the timer
	})
}

// Issue 14.3 with real sessions: a restarted speaker whose leftover routes
// go through b stays unsynced past its settle bound while b is still
// coming up, and syncs on b's End-of-RIB; a peer it expects nothing from
// (c, never up) does not hold it back beyond the settle bound.
func TestSyncedWaitsForComingBackPeer(t *testing.T) {
	n := nodes(t, 3)
	const settle = 300 * time.Millisecond
	a := newSpeaker(t, nil, WithSyncBound(settle))
	a.MarkRestarting(n[1].addr)
	reconcile(t, a, fullMesh(n[0], n...), n[0].blocks...)
	start := time.Now()
	testutil.Eventually(t, wait, "past the settle bound", func() bool { return time.Since(start) > 3*settle })
	if a.Synced() {
		t.Fatal("synced while b, which the leftover routes go through, is still coming up")
	}
	b := newSpeaker(t, nil)
	reconcile(t, b, fullMesh(n[1], n...), n[1].blocks...)
	testutil.Eventually(t, 3*wait, "a synced by b's End-of-RIB", a.Synced)
	if !hasVia(a, n[1].blocks[0], n[1].addr, "b") {
		t.Errorf("synced before learning b's block: %v", a.Learned())
	}
}
