package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// sessionsUp reports whether node's sessions with every other node are
// established on both sides. (Not whether node is synced: with the
// example policy's absent home router that takes the 10 s sync bound.)
func sessionsUp(t *testing.T, l *lab.Lab, node string) (bool, error) {
	st, err := l.Status(t.Context(), node)
	if err != nil {
		return false, nil // restarting: socket not there yet
	}
	var v struct {
		BGP struct {
			Peers []struct{ Name, State string }
		} `json:"bgp"`
	}
	if err := json.Unmarshal(st.Raw, &v); err != nil {
		return false, err
	}
	up := map[string]bool{}
	for _, p := range v.BGP.Peers {
		up[p.Name] = p.State == "established"
	}
	for _, o := range others(l, node) {
		if !up[o] {
			return false, nil
		}
		ps, err := l.PeerStates(t.Context(), o)
		if err != nil {
			return false, nil
		}
		if ps[node] != "established" {
			return false, nil
		}
	}
	return true, nil
}

// flow is one continuous ping.
type flow struct {
	name string
	src  lab.Pod
	dst  lab.Pod
}

// TestRestartZeroLoss restarts one node's netd many times, with kill -9
// and with SIGTERM in graceful stop mode, while pods ping at 10/s to its
// pods and through it (its own routes to another node): not one packet
// may be lost. Both sides of graceful restart are exercised: the peers
// keep the restarting node's routes (R-bit and F-bit from the restarting
// netd, End-of-RIB before pruning), and the restarting netd keeps the
// peers' routes in its kernel until it is synced.
func TestRestartZeroLoss(t *testing.T) {
	l := upLab(t)
	const node = "ultra"
	u, _ := l.Node(node)
	fb, _ := l.Node("firebat")
	cp, _ := l.Node("control-plane")
	old, _ := l.Node("old")
	flows := []flow{
		{"firebat->ultra (lan)", fb.Pods[0], u.Pods[0]},
		{"control-plane->ultra (overlay)", cp.Pods[0], u.Pods[1]},
		{"ultra->control-plane (ultra's learned route)", u.Pods[1], cp.Pods[1]},
		{"ultra->old (ultra's learned route)", u.Pods[0], old.Pods[0]},
	}
	ctx := t.Context()
	waitUp := func(what string) time.Duration {
		return testutil.Poll(t, 90*time.Second, what, func() (bool, error) {
			ok, err := sessionsUp(t, l, node)
			if !ok || err != nil {
				return ok, err
			}
			return blocksEverywhere(l, names(l), names(l))
		})
	}
	type result struct {
		sent, lost int
		took       []time.Duration
	}
	run := func(t *testing.T, mode string, restart func() error) result {
		var res result
		for rep := range *restartReps {
			waitUp(fmt.Sprintf("%s rep %d: converged before", mode, rep))
			var streams []*lab.PingStream
			for _, f := range flows {
				s, err := lab.StartPingStream(f.src.NS, f.src.Addr, f.dst.Addr, 100*time.Millisecond)
				if err != nil {
					t.Fatal(err)
				}
				streams = append(streams, s)
			}
			if err := restart(); err != nil {
				t.Fatal(err)
			}
			res.took = append(res.took, waitUp(fmt.Sprintf("%s rep %d: converged after", mode, rep)))
			for i, s := range streams {
				sent, lost := s.Stop()
				res.sent += sent
				res.lost += len(lost)
				if len(lost) > 0 {
					t.Errorf("%s rep %d: %s lost %d of %d (seq %v)", mode, rep, flows[i].name, len(lost), sent, lost)
				}
			}
		}
		return res
	}

	t.Run("kill9", func(t *testing.T) {
		r := run(t, "kill -9", func() error {
			if err := l.KillNetd(ctx, node); err != nil {
				return err
			}
			return l.StartNetd(ctx, node)
		})
		t.Logf("kill -9 + start, %d reps: %d of %d echo requests lost; re-converged in median %v (max %v)",
			*restartReps, r.lost, r.sent, median(r.took), slices.Max(r.took))
	})
	t.Run("graceful", func(t *testing.T) {
		// Run netd in graceful stop mode from here on.
		if err := l.StopNetd(ctx, node, 10*time.Second); err != nil {
			t.Fatal(err)
		}
		if err := l.StartNetdArgs(ctx, node, "--stop-mode", "graceful"); err != nil {
			t.Fatal(err)
		}
		r := run(t, "sigterm graceful", func() error {
			if err := l.StopNetd(ctx, node, 10*time.Second); err != nil {
				return err
			}
			return l.StartNetdArgs(ctx, node, "--stop-mode", "graceful")
		})
		t.Logf("SIGTERM (graceful) + start, %d reps: %d of %d echo requests lost; re-converged in median %v (max %v)",
			*restartReps, r.lost, r.sent, median(r.took), slices.Max(r.took))
	})
	if testing.Verbose() {
		t.Logf("--- netd log of %s (end):\n%s", node, l.LogTail(node, 80))
	}
	if n := logCount(t, l, node, "re-added it with the R-bit"); n > 0 {
		t.Logf("GoBGP cleared the restart bit of a not-yet-up peer %d times on %s; netd re-added those peers with the R-bit", n, node)
	}
}

// bfdUp reports whether BFD of every node in on has admitted peer.
func bfdUp(t *testing.T, l *lab.Lab, on []string, peer string) bool {
	p, _ := l.Node(peer)
	for _, o := range on {
		if metric(t, l, o, "netd_bfd_session_up", fmt.Sprintf("peer=%q", p.OverlayAddr)) != 1 {
			return false
		}
	}
	return true
}

// TestBFDSilentFailure cuts a node's overlay link (no FIN, no
// NOTIFICATION): its routes must leave every other kernel within a second
// (BFD), where the hold timer alone would take 9 s to drop the session and
// graceful restart would then keep the routes for the restart time. One
// node (ultra) runs without BFD to measure the hold-timer-only figure in
// the same run. A frozen netd (SIGSTOP) is no failure of the path: BFD
// declares it down, but its node answers, so its routes stay (nothing
// lost) until its links are cut too. After each cut the node comes back
// and everything re-converges.
func TestBFDSilentFailure(t *testing.T) {
	l := upLab(t)
	ctx := t.Context()
	const victim, noBFD = "control-plane", "ultra"
	withBFD := []string{"firebat", "old"}
	if err := l.StopNetd(ctx, noBFD, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := l.StartNetdArgs(ctx, noBFD, "--bfd=false"); err != nil {
		t.Fatal(err)
	}
	converged := func(what string) {
		testutil.Poll(t, 120*time.Second, what, func() (bool, error) { return blocksEverywhere(l, names(l), names(l)) })
		testutil.Poll(t, 120*time.Second, what+" (sessions)", func() (bool, error) { return sessionsUp(t, l, victim) })
		testutil.Poll(t, 60*time.Second, what+" (bfd)", func() (bool, error) { return bfdUp(t, l, withBFD, victim), nil })
	}
	var bfdTimes, holdTimes []time.Duration
	for run := range *bfdRuns {
		converged(fmt.Sprintf("run %d: converged", run))
		start := time.Now()
		if err := l.SetOverlayLink(victim, false); err != nil {
			t.Fatal(err)
		}
		d := testutil.Poll(t, 30*time.Second, "victim's blocks gone from the BFD nodes", func() (bool, error) { return blocksGone(l, victim, withBFD) })
		bfdTimes = append(bfdTimes, d)
		var state string
		testutil.Poll(t, 60*time.Second, "hold timer drops the session on the node without BFD", func() (bool, error) {
			ps, err := l.PeerStates(ctx, noBFD)
			state = ps[victim]
			return err == nil && state != "established", err
		})
		holdTimes = append(holdTimes, time.Since(start))
		t.Logf("run %d: %s's session to %s left established after %v (now %q)", run, noBFD, victim, holdTimes[run], state)
		if ok, _, _ := l.HasRoutes(noBFD, []string{victim}); ok {
			t.Logf("run %d: %s (no BFD) still routes to %s after its hold timer (graceful restart keeps them as stale)", run, noBFD, victim)
		}
		if err := l.SetOverlayLink(victim, true); err != nil {
			t.Fatal(err)
		}
	}
	converged("after the last cut")
	t.Logf("overlay link cut -> routes gone from every BFD node: %v; median %v, min %v, max %v", bfdTimes, median(bfdTimes), slices.Min(bfdTimes), slices.Max(bfdTimes))
	t.Logf("same cuts -> session dropped by the hold timer (9 s) on the node without BFD: median %v, min %v, max %v", median(holdTimes), slices.Min(holdTimes), slices.Max(holdTimes))
	if median(bfdTimes) > time.Second {
		t.Errorf("median time to withdraw a silent peer's routes %v, want <= 1s", median(bfdTimes))
	}

	// A frozen netd: its node still forwards, so the BFD nodes keep its
	// routes once BFD declares it down (the path guard asks the node,
	// which answers): not one ping to or from it is lost. Then, still
	// frozen, both its links are cut: its path is dead, and its routes
	// leave the BFD nodes within the guard's next check.
	const frozen = "old"
	watchers := []string{"firebat", victim}
	fn, _ := l.Node(frozen)
	kept := func(n string) float64 {
		return metric(t, l, n, "netd_bfd_down_routes_kept_total", fmt.Sprintf("peer=%q", fn.OverlayAddr))
	}
	testutil.Poll(t, 60*time.Second, "bfd up before the freeze", func() (bool, error) { return bfdUp(t, l, watchers, frozen), nil })
	keptBefore := map[string]float64{}
	for _, n := range watchers {
		keptBefore[n] = kept(n)
	}
	f := startFlows(t, l, [][2]string{{"firebat", frozen}, {frozen, "firebat"}, {victim, frozen}, {frozen, victim}})
	if err := l.SignalNetd(frozen, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.SignalNetd(frozen, syscall.SIGCONT) })
	d := testutil.Poll(t, 30*time.Second, "bfd down on the watchers, routes kept", func() (bool, error) {
		for _, n := range watchers {
			if kept(n) <= keptBefore[n] {
				return false, nil
			}
		}
		return true, nil
	})
	t.Logf("netd SIGSTOP -> bfd down and routes kept on %v after %v", watchers, d)
	holdsFor(t, 2*time.Second, "frozen node's blocks kept", func() (bool, error) { return blocksEverywhere(l, watchers, []string{frozen}) })
	sent, lost := f.stop("frozen netd")
	t.Logf("while %s's netd was frozen: %d of %d echo requests lost", frozen, lost, sent)
	if err := l.SetOverlayLink(frozen, false); err != nil {
		t.Fatal(err)
	}
	if err := l.SetLANLink(frozen, false); err != nil {
		t.Fatal(err)
	}
	d = testutil.Poll(t, 30*time.Second, "frozen and cut node's blocks gone", func() (bool, error) { return blocksGone(l, frozen, watchers) })
	t.Logf("frozen node's links cut -> its routes gone from the BFD nodes in %v", d)
	if d > 2*time.Second {
		t.Errorf("routes of a frozen node whose links are cut withdrawn after %v, want within about a second", d)
	}
	for _, up := range []func(string, bool) error{l.SetOverlayLink, l.SetLANLink} {
		if err := up(frozen, true); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.SignalNetd(frozen, syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	d = testutil.Poll(t, 120*time.Second, "re-converged after the thaw", func() (bool, error) { return blocksEverywhere(l, names(l), names(l)) })
	t.Logf("SIGCONT -> re-converged in %v", d)
}

// holdsFor fails t if cond does not hold at every check for d.
func holdsFor(t *testing.T, d time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	end := time.Now().Add(d)
	for time.Now().Before(end) {
		ok, err := cond()
		if err != nil {
			t.Fatalf("%s: %v", what, err)
		}
		if !ok {
			t.Fatalf("%s: stopped holding after %v", what, d-time.Until(end))
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestFlapOverlay flaps a node's overlay link down and up many times in a
// row: each time its routes leave the kernels that reach it only over the
// overlay and come back, while the nodes of its LAN keep them (their
// routes use the LAN, which answers the path guard's check although BFD,
// which runs over the overlay, is down); at the end every kernel holds
// exactly the routes it should (no stale, no blackhole) and the pods
// reach one another.
func TestFlapOverlay(t *testing.T) {
	l := upLab(t)
	const victim = "old"
	rest := others(l, victim)
	vn, _ := l.Node(victim)
	var lanPeers, overlayOnly []string
	for _, n := range rest {
		if o, _ := l.Node(n); o.LAN != "" && o.LAN == vn.LAN {
			lanPeers = append(lanPeers, n)
		} else {
			overlayOnly = append(overlayOnly, n)
		}
	}
	if len(lanPeers) == 0 || len(overlayOnly) == 0 {
		t.Fatalf("lab without LAN peers (%v) or overlay-only peers (%v) of %s", lanPeers, overlayOnly, victim)
	}
	kept := func() float64 {
		var sum float64
		for _, n := range lanPeers {
			sum += metric(t, l, n, "netd_bfd_down_routes_kept_total", fmt.Sprintf("peer=%q", vn.OverlayAddr))
		}
		return sum
	}
	var gone, back []time.Duration
	for i := range *flapCount {
		testutil.Poll(t, 60*time.Second, "bfd up", func() (bool, error) { return bfdUp(t, l, rest, victim), nil })
		keptBefore := kept()
		if err := l.SetOverlayLink(victim, false); err != nil {
			t.Fatal(err)
		}
		gone = append(gone, testutil.Poll(t, 30*time.Second, fmt.Sprintf("flap %d: withdrawn from %v", i, overlayOnly), func() (bool, error) { return blocksGone(l, victim, overlayOnly) }))
		testutil.Poll(t, 30*time.Second, fmt.Sprintf("flap %d: %v keep the routes over the LAN", i, lanPeers), func() (bool, error) {
			return kept() >= keptBefore+float64(len(lanPeers)), nil
		})
		if ok, err := blocksEverywhere(l, lanPeers, []string{victim}); err != nil || !ok {
			t.Fatalf("flap %d: %v lost %s's routes although the LAN works (err %v)", i, lanPeers, victim, err)
		}
		if err := l.SetOverlayLink(victim, true); err != nil {
			t.Fatal(err)
		}
		back = append(back, testutil.Poll(t, 120*time.Second, fmt.Sprintf("flap %d: back", i), func() (bool, error) { return blocksEverywhere(l, names(l), names(l)) }))
	}
	t.Logf("%d flaps: withdrawn from %v after %v; back after %v", *flapCount, overlayOnly, gone, back)
	// Exactly the right routes everywhere: one per block of every other
	// node, nothing else.
	for _, n := range l.Nodes {
		rs, err := l.Routes(n.Name)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for _, o := range l.Nodes {
			if o.Name != n.Name {
				want += len(o.PodCIDRs)
			}
		}
		if len(rs) != want {
			txt, _ := l.RouteText(t.Context(), n.Name)
			t.Errorf("%s has %d netd routes, want %d: %v", n.Name, len(rs), want, txt)
		}
	}
	rep, err := l.Check(t.Context(), lab.CheckOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		var b strings.Builder
		rep.Print(&b)
		t.Errorf("pod matrix fails after the flaps:\n%s", b.String())
	}
}

// TestReloadPolicy: a broken policy file changes nothing (every route
// stays, the error is counted); a valid file without node old withdraws
// exactly old's routes from every other node and nothing else.
func TestReloadPolicy(t *testing.T) {
	l := upLab(t)
	rest := []string{"control-plane", "firebat", "ultra"}
	testutil.Poll(t, 60*time.Second, "converged", func() (bool, error) { return blocksEverywhere(l, names(l), names(l)) })
	before := map[string][]string{}
	for _, n := range rest {
		txt, err := l.RouteText(t.Context(), n)
		if err != nil {
			t.Fatal(err)
		}
		before[n] = txt
	}
	good, err := os.ReadFile(l.PolicyPath)
	if err != nil {
		t.Fatal(err)
	}
	write := func(b []byte) {
		// Replace atomically, as an editor or git checkout would.
		tmp := l.PolicyPath + ".new"
		if err := os.WriteFile(tmp, b, 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmp, l.PolicyPath); err != nil {
			t.Fatal(err)
		}
	}
	write([]byte(strings.Replace(string(good), "asn: 64512", "asn: banana", 1)))
	for _, n := range rest {
		testutil.Poll(t, 30*time.Second, n+" rejects the broken policy", func() (bool, error) {
			return metric(t, l, n, "netd_policy_reload_errors_total", "") >= 1, nil
		})
	}
	for _, n := range rest {
		txt, _ := l.RouteText(t.Context(), n)
		if !slices.Equal(txt, before[n]) {
			t.Errorf("%s routes changed after a broken policy:\n%v\nwant\n%v", n, txt, before[n])
		}
	}
	// A valid policy without old (and without its peering).
	i := strings.Index(string(good), "    - name: old ")
	j := strings.Index(string(good), "  # BGP between the netd speakers")
	if i < 0 || j < i {
		t.Fatal("cannot find node old in the policy")
	}
	write([]byte(string(good[:i]) + string(good[j:])))
	oldNode, _ := l.Node("old")
	for _, n := range rest {
		testutil.Poll(t, 30*time.Second, n+" withdraws exactly old's blocks", func() (bool, error) {
			txt, err := l.RouteText(t.Context(), n)
			if err != nil {
				return false, err
			}
			var want []string
			for _, line := range before[n] {
				drop := false
				for _, b := range oldNode.PodCIDRs {
					drop = drop || strings.HasPrefix(line, b.String()+" ")
				}
				if !drop {
					want = append(want, line)
				}
			}
			return slices.Equal(txt, want), nil
		})
	}
}
