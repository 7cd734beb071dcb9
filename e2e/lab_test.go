package e2e

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// TestConnectivity: every pod reaches every other over ICMP and TCP, home
// pairs take the LAN and pairs with the EC2 node the overlay, the path MTU
// is 1280 over the overlay and 1500 over the LAN, and 8 MiB cross the
// overlay. Nothing in the lab can reach the host.
func TestConnectivity(t *testing.T) {
	l := upLab(t)
	ctx := t.Context()
	for _, n := range l.Nodes {
		if rss, err := l.RSS(n.Name); err == nil {
			t.Logf("netd RSS on %s after convergence: %.1f MiB", n.Name, float64(rss)/(1<<20))
		}
	}
	rep, err := l.Check(ctx, lab.CheckOptions{BulkBytes: 8 << 20})
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	rep.Print(&b)
	t.Log("\n" + b.String())
	if !rep.OK() {
		t.Error("lab check failed")
	}
	cp := "control-plane"
	for _, p := range rep.Pairs {
		want := lab.PathLAN
		switch {
		case p.Src.Node == p.Dst.Node:
			want = lab.PathLocal
		case p.Src.Node == cp || p.Dst.Node == cp:
			want = lab.PathOverlay
		}
		if p.Path.Kind != want {
			t.Errorf("%s -> %s: path %s, want %s", p.Src.Addr, p.Dst.Addr, p.Path, want)
		}
	}
	for _, m := range rep.MTU {
		overlay := m.Src == cp || m.Dst == cp
		switch {
		case overlay && (m.Expected != 1280 || !m.At.Reply || !m.Above.FragNeeded || m.Above.MTU != 1280):
			t.Errorf("%s -> %s over the overlay: 1280: %v, 1281: %v; want reply, frag-needed mtu 1280", m.Src, m.Dst, m.At, m.Above)
		case !overlay && (m.Expected != 1500 || !m.At.Reply):
			t.Errorf("%s -> %s over the LAN: 1500: %v; want reply", m.Src, m.Dst, m.At)
		}
		// netd sets the MTU on its routes (not only the device has it).
		if m.Path.MTU != m.Expected {
			t.Errorf("%s -> %s: route mtu %d, want %d", m.Src, m.Dst, m.Path.MTU, m.Expected)
		}
	}
	if rep.Bulk == nil || rep.Bulk.Err != "" || rep.Bulk.Path.Kind != lab.PathOverlay {
		t.Errorf("bulk transfer over the overlay: %+v", rep.Bulk)
	}
	if err := l.CheckIsolation(ctx); err != nil {
		t.Error(err)
	}
	// A real connect from a pod to an address outside the lab (TEST-NET-1,
	// never routed): the node has no route, so it answers "unreachable".
	pod := l.AllPods()[0]
	err = lab.InNS(pod.NS, func() error {
		c, err := net.DialTimeout("tcp4", "192.0.2.1:80", 3*time.Second)
		if err == nil {
			c.Close()
			t.Errorf("pod %s connected to 192.0.2.1", pod.NS)
			return nil
		}
		if !strings.Contains(err.Error(), "unreachable") {
			t.Errorf("connect from pod to 192.0.2.1: %v; want network/host unreachable", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// TestJoinAndLeave: three nodes run netd; the fourth joins (its blocks
// appear on all others and its pods become reachable), then leaves on
// SIGTERM (its blocks are withdrawn everywhere). Joins are repeated for a
// median, each after the others' sessions to the joiner have left the idle
// state; one more round restarts the joiner at once (what a restart sees).
func TestJoinAndLeave(t *testing.T) {
	t.Parallel() // see doc.go
	const joiner = "old"
	l := upLab(t, joiner)
	var joins, leaves []time.Duration
	for round := range 4 {
		restart := round == 3
		if !restart {
			if d := waitPeersLeftIdle(t, l, joiner); round > 0 {
				t.Logf("others' sessions to %s left idle %v after its leave", joiner, d)
			}
		}
		d := join(t, l, joiner)
		if restart {
			t.Logf("restart right after a leave (netd start -> block on all others): %v", d)
		} else {
			joins = append(joins, d)
		}
		leaves = append(leaves, leave(t, l, joiner))
	}
	t.Logf("join (netd start -> block on all others): %v, median %v", joins, median(joins))
	t.Logf("leave (SIGTERM -> withdrawn everywhere): %v, median %v", leaves, median(leaves))
}

// waitPeersLeftIdle waits until no other node's session to node is idle
// (GoBGP holds a session idle for a while after a peer's Cease).
func waitPeersLeftIdle(t *testing.T, l *lab.Lab, node string) time.Duration {
	t.Helper()
	return testutil.Poll(t, 60*time.Second, "sessions to "+node+" leave idle", func() (bool, error) {
		for _, o := range others(l, node) {
			st, err := l.PeerStates(t.Context(), o)
			if err != nil {
				return false, err
			}
			if s, ok := st[node]; !ok || s == "idle" || s == "established" {
				return false, nil
			}
		}
		return true, nil
	})
}

// join starts node's netd and returns the time until its blocks are on
// every other node; it then checks the node's pods are reachable.
func join(t *testing.T, l *lab.Lab, node string) time.Duration {
	t.Helper()
	ctx := t.Context()
	j, _ := l.Node(node)
	start := time.Now()
	if err := l.StartNetd(ctx, node); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 60*time.Second, node+"'s blocks on every other node", func() (bool, error) {
		for _, o := range others(l, node) {
			ok, _, err := l.HasRoutes(o, []string{node})
			if err != nil || !ok {
				return false, err
			}
		}
		return true, nil
	})
	d := time.Since(start)
	testutil.Poll(t, 30*time.Second, node+" has every block", func() (bool, error) {
		ok, _, err := l.HasRoutes(node, others(l, node))
		return ok, err
	})
	for _, o := range l.Nodes {
		if o.Name == node {
			continue
		}
		r, err := lab.Ping(ctx, o.Pods[0].NS, o.Pods[0].Addr, j.Pods[0].Addr, 84, false, 3*time.Second)
		if err != nil || !r.Reply {
			t.Errorf("%s -> %s %s: %v %v", o.Name, node, j.Pods[0].Addr, r, err)
		}
	}
	return d
}

// leave stops node's netd and returns the time until its blocks are gone
// from every other node.
func leave(t *testing.T, l *lab.Lab, node string) time.Duration {
	t.Helper()
	j, _ := l.Node(node)
	start := time.Now()
	if err := l.StopNetd(t.Context(), node, 10*time.Second); err != nil {
		t.Fatal(err)
	}
	testutil.Poll(t, 30*time.Second, node+"'s blocks withdrawn from every other node", func() (bool, error) {
		for _, o := range others(l, node) {
			rs, err := l.Routes(o)
			if err != nil {
				return false, err
			}
			for _, r := range rs {
				for _, b := range j.PodCIDRs {
					if p, ok := netip.AddrFromSlice(r.Dst.IP); ok && b.Contains(p) {
						return false, nil
					}
				}
			}
		}
		return true, nil
	})
	return time.Since(start)
}

// TestLANFallback: when a home node's LAN port breaks, traffic between it
// and the other home nodes moves to the overlay, and back when it heals.
func TestLANFallback(t *testing.T) {
	l := upLab(t)
	ctx := t.Context()
	fb, _ := l.Node("firebat")
	ul, _ := l.Node("ultra")
	src, dst := fb.Pods[0], ul.Pods[0]
	path := func(want string) func() (bool, error) {
		return func() (bool, error) {
			h, err := l.Path(src, dst.Addr)
			return err == nil && h.Kind == want, err
		}
	}
	testutil.Poll(t, 10*time.Second, "firebat -> ultra over the LAN", path(lab.PathLAN))
	if err := l.SetLANLink("ultra", false); err != nil {
		t.Fatal(err)
	}
	d := testutil.Poll(t, 30*time.Second, "firebat -> ultra falls back to the overlay", path(lab.PathOverlay))
	t.Logf("LAN break -> overlay path in %v", d)
	if r, err := lab.Ping(ctx, src.NS, src.Addr, dst.Addr, 84, false, 3*time.Second); err != nil || !r.Reply {
		t.Errorf("firebat -> ultra over the overlay: %v %v", r, err)
	}
	if err := l.SetLANLink("ultra", true); err != nil {
		t.Fatal(err)
	}
	d = testutil.Poll(t, 30*time.Second, "firebat -> ultra back on the LAN", path(lab.PathLAN))
	t.Logf("LAN heal -> LAN path in %v", d)
}
