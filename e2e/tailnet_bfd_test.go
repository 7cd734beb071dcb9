package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/daemon"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/policy/acldoc"
	"github.com/ducksnest/netd/policy/desired"
)

// bfdStatus returns the BFD part of a node's netd status.
func bfdStatus(ctx context.Context, l *lab.Lab, node string) (*daemon.BFDStatus, error) {
	s, err := l.Status(ctx, node)
	if err != nil {
		return nil, err
	}
	var ds daemon.Status
	if err := json.Unmarshal(s.Raw, &ds); err != nil {
		return nil, fmt.Errorf("decoding status of %s: %w", node, err)
	}
	if ds.BFD == nil {
		return nil, fmt.Errorf("%s runs without BFD", node)
	}
	return ds.BFD, nil
}

// bfdOverlayUp reports which overlay peers of node are not up and
// admitted by its BFD (nil: all are), with their state.
func bfdOverlayUp(ctx context.Context, l *lab.Lab, st *desired.State, node string) ([]string, error) {
	return bfdOverlay(ctx, l, st, node, true)
}

// bfdOverlay reports which overlay peers of node are not up in its BFD
// (and, with admitted, not past the hold-down or with a warning).
func bfdOverlay(ctx context.Context, l *lab.Lab, st *desired.State, node string, admitted bool) ([]string, error) {
	b, err := bfdStatus(ctx, l, node)
	if err != nil {
		return nil, err
	}
	var notUp []string
	seen := 0
	for _, p := range b.Peers {
		if !st.Networks.Overlay.Contains(p.Peer) {
			continue
		}
		seen++
		if p.State != "up" || admitted && (!p.Admitted || !p.EverUp || p.Warning != "") {
			notUp = append(notUp, fmt.Sprintf("%s %s (admitted %v, warning %q)", p.Name, p.State, p.Admitted, p.Warning))
		}
	}
	if seen != len(l.Nodes)-1 {
		notUp = append(notUp, fmt.Sprintf("%d overlay sessions, want %d", seen, len(l.Nodes)-1))
	}
	return notUp, nil
}

// testBFDOverTailnet shows, on the tailnet lab running the example policy
// as deployed (BFD on, headscale enforcing the generated policy with its
// UDP 3784 grant), that every node's BFD session to every other node is up
// over tailscale0 (status, text and JSON, and metrics), that a silent
// peer (its underlay cut: no BFD, no BGP, no FIN) has its routes removed
// from every other node's table within a second, and that a frozen netd
// (SIGSTOP), whose node still forwards, keeps its routes. After each,
// everything re-converges. The freeze comes first: the cut makes the
// victim's tailscaled reconnect to headscale, which can make headscale
// stop serving its routes for a moment (tailscale_routes.go in the lab).
func testBFDOverTailnet(ctx context.Context, t *testing.T, l *lab.Lab, tn *lab.Tailnet, st *desired.State) {
	var notUp []string
	took := testutil.Poll(t, 60*time.Second, "BFD up to every overlay peer on every node", func() (bool, error) {
		notUp = nil
		for _, n := range l.Nodes {
			bad, err := bfdOverlayUp(ctx, l, st, n.Name)
			if err != nil {
				return false, err
			}
			for _, b := range bad {
				notUp = append(notUp, n.Name+": "+b)
			}
		}
		return len(notUp) == 0, nil
	})
	t.Logf("BFD up on all %d nodes to every overlay peer (%v after the checks began)", len(l.Nodes), took.Round(time.Millisecond))
	for _, n := range l.Nodes {
		for _, o := range l.Nodes {
			if o == n {
				continue
			}
			if v := metric(t, l, n.Name, "netd_bfd_session_up", fmt.Sprintf("peer=%q", o.OverlayAddr)); v != 1 {
				t.Errorf("%s: netd_bfd_session_up{peer=%q} = %v, want 1", n.Name, o.OverlayAddr, v)
			}
			if v := metric(t, l, n.Name, "netd_bfd_session_never_up", fmt.Sprintf("peer=%q", o.OverlayAddr)); v != 0 {
				t.Errorf("%s: netd_bfd_session_never_up{peer=%q} = %v, want 0", n.Name, o.OverlayAddr, v)
			}
			// The session runs over tailscale0: the kernel's route from the
			// node's overlay address to the peer's leaves through it.
			var dev string
			err := lab.InNS(n.NS, func() error {
				rs, err := netlink.RouteGetWithOptions(o.OverlayAddr.AsSlice(), &netlink.RouteGetOptions{SrcAddr: n.OverlayAddr.AsSlice()})
				if err != nil {
					return fmt.Errorf("route get %s from %s: %w", o.OverlayAddr, n.OverlayAddr, err)
				}
				if len(rs) == 0 {
					return fmt.Errorf("route get %s from %s: no route", o.OverlayAddr, n.OverlayAddr)
				}
				lk, err := netlink.LinkByIndex(rs[0].LinkIndex)
				if err != nil {
					return err
				}
				dev = lk.Attrs().Name
				return nil
			})
			if err != nil || dev != "tailscale0" {
				t.Errorf("%s -> %s (BFD, BGP) leaves through %q (%v), want tailscale0", n.Name, o.Name, dev, err)
			}
		}
	}
	cp, _ := l.Node("control-plane")
	out, err := exec.CommandContext(ctx, netdBin, "status", "--socket", cp.Socket).CombinedOutput()
	if !strings.Contains(string(out), "BFD  interval 100ms  multiplier 8") || strings.Contains(string(out), "WARNING bfd") ||
		strings.Count(string(out), "  up  ") < len(l.Nodes)-1 {
		t.Errorf("netd status on control-plane (%v):\n%s", err, out)
	} else {
		t.Logf("netd status on control-plane (BFD part):\n%s", section(string(out), "BFD  interval", "\n\n"))
	}
	if t.Failed() {
		return
	}

	const victim = "control-plane"
	others := others(l, victim)
	testFrozenPeer(ctx, t, l, tn, st, victim, others)
	if t.Failed() {
		return
	}

	// A silent peer: control-plane reaches the others only over
	// tailscale0; its underlay is cut (no FIN, tailscale0 stays up).
	silenced := time.Now()
	if err := l.SetOverlayLink(victim, false); err != nil {
		t.Fatal(err)
	}
	restored := false
	restore := func() {
		if !restored {
			restored = true
			if err := l.SetOverlayLink(victim, true); err != nil {
				t.Errorf("restoring the underlay: %v", err)
			}
		}
	}
	defer restore()
	gone := map[string]time.Duration{}
	testutil.Poll(t, 30*time.Second, "the silent peer's routes gone from table 244 on every other node", func() (bool, error) {
		for _, o := range others {
			if _, ok := gone[o]; ok {
				continue
			}
			ok, err := blocksGone(l, victim, []string{o})
			if err != nil {
				return false, err
			}
			if ok {
				gone[o] = time.Since(silenced)
			}
		}
		return len(gone) == len(others), nil
	})
	ds := make([]time.Duration, 0, len(gone))
	for _, o := range others {
		ds = append(ds, gone[o].Round(time.Millisecond))
	}
	t.Logf("MEASURE tailnet BFD: %s's underlay cut -> its routes gone from table %d on %v after %v (median %v, max %v)",
		victim, l.Table, others, ds, median(ds), slices.Max(ds))
	if median(ds) > time.Second {
		t.Errorf("a silent peer's routes left the other nodes after %v (median), want within 1s", median(ds))
	}
	for _, o := range others {
		if v := metric(t, l, o, "netd_bfd_session_up", fmt.Sprintf("peer=%q", cp.OverlayAddr)); v != 0 {
			t.Errorf("%s: netd_bfd_session_up{peer=%q} = %v while it is silent, want 0", o, cp.OverlayAddr, v)
		}
		// The metric the freeze above found unchanged does count this.
		if v := metric(t, l, o, "netd_bgp_peer_cutoffs_total", fmt.Sprintf("peer=%q", victim)); v == 0 {
			t.Errorf("%s: netd_bgp_peer_cutoffs_total{peer=%q} = 0 after its path died", o, victim)
		}
	}
	restore()
	back := testutil.Poll(t, 120*time.Second, "re-converged after the cut", func() (bool, error) {
		ok, err := blocksEverywhere(l, names(l), names(l))
		if !ok || err != nil {
			return ok, err
		}
		return bfdAdmittedEverywhere(ctx, l, st)
	})
	t.Logf("underlay back -> routes and BFD back everywhere in %v", back.Round(time.Millisecond))
}

// bfdAdmittedEverywhere reports whether every node's BFD has every
// overlay peer up and admitted (past its hold-down).
func bfdAdmittedEverywhere(ctx context.Context, l *lab.Lab, st *desired.State) (bool, error) {
	for _, n := range l.Nodes {
		bad, err := bfdOverlayUp(ctx, l, st, n.Name)
		if err != nil || len(bad) > 0 {
			return false, nil //nolint:nilerr // a node restarting its status socket: poll again
		}
	}
	return true, nil
}

// testBFDGrant shows that headscale enforces the generated grant BFD
// needs: applied without it, the sessions over tailscale0 go down (so
// without it BFD would never have come up); restored, they come back up.
func testBFDGrant(ctx context.Context, t *testing.T, l *lab.Lab, st *desired.State, target acl.Target) {
	p, err := acldoc.Parse(st.Tailnet.Tailscale.HuJSON)
	if err != nil {
		t.Fatal(err)
	}
	n := len(p.Grants)
	p.Grants = slices.DeleteFunc(p.Grants, func(g acldoc.Grant) bool { return slices.Equal(g.IP, []string{"udp:3784"}) })
	p.Tests = slices.DeleteFunc(p.Tests, func(x acldoc.Test) bool { return strings.Contains(strings.Join(x.Accept, " "), ":3784") })
	if len(p.Grants) != n-1 {
		t.Fatalf("the compiled policy has no single udp:3784 grant (%d grants, %d without)", n, len(p.Grants))
	}
	p.Generated = nil
	doc, err := acldoc.Render(p, []string{"e2e: the compiled policy without the BFD grant"})
	if err != nil {
		t.Fatal(err)
	}
	cut, err := acldoc.Desired(doc)
	if err != nil {
		t.Fatal(err)
	}
	applied := time.Now()
	if res, err := acl.Apply(ctx, target, &cut, acl.Options{}); err != nil || !res.Written {
		t.Fatalf("apply without the BFD grant: %+v %v", res, err)
	}
	down := testutil.Poll(t, 30*time.Second, "BFD sessions over tailscale0 down without the grant", func() (bool, error) {
		for _, nd := range l.Nodes {
			bad, err := bfdOverlayUp(ctx, l, st, nd.Name)
			if err != nil {
				return false, err
			}
			if len(bad) != len(l.Nodes)-1 {
				return false, nil
			}
		}
		return true, nil
	})
	t.Logf("MEASURE tailnet policy without udp:3784: every BFD session over tailscale0 down %v after the apply began", down.Round(time.Millisecond))
	if res, err := acl.Apply(ctx, target, &st.Tailnet, acl.Options{}); err != nil || !res.Written {
		t.Fatalf("restore: %+v %v", res, err)
	}
	// The sessions come back up (their re-admission then waits out the
	// hold-down, which doubles with each recent failure: not awaited).
	back := testutil.Poll(t, 60*time.Second, "BFD sessions up again with the grant", func() (bool, error) {
		for _, nd := range l.Nodes {
			bad, err := bfdOverlay(ctx, l, st, nd.Name, false)
			if err != nil || len(bad) > 0 {
				return false, err
			}
		}
		return true, nil
	})
	t.Logf("grant restored: every BFD session over tailscale0 up again %v later (%v since the first apply)", back.Round(time.Millisecond), time.Since(applied).Round(time.Millisecond))
}

// section returns s from the first line starting with from up to end.
func section(s, from, end string) string {
	i := strings.Index(s, from)
	if i < 0 {
		return ""
	}
	s = s[i:]
	if j := strings.Index(s, end); j >= 0 {
		s = s[:j]
	}
	return s
}
