package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/daemon"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/policy/desired"
)

// testFrozenPeer freezes victim's netd (SIGSTOP). That is no failure of
// the path: BFD on the others declares it down, but its node answers over
// tailscale0, so the others keep its routes (netd_bfd_down_routes_kept_total
// rises, netd_bgp_peer_cutoffs_total does not) for as long as it stays
// frozen within the BGP hold time; thawed, BFD comes back everywhere.
//
// One thing outside netd can still take the routes away meanwhile: the
// control server not serving the victim's routes (headscale 0.26's lost
// primary routes, see netd/lab/tailscale_routes.go). Then every node's
// netd rightly drops them as routes Tailscale would drop; the check
// reads that reason from the node's status and says so, instead of
// blaming netd.
func testFrozenPeer(ctx context.Context, t *testing.T, l *lab.Lab, tn *lab.Tailnet, st *desired.State, victim string, others []string) {
	v, err := l.Node(victim)
	if err != nil {
		t.Fatal(err)
	}
	kept := func(n string) float64 {
		return metric(t, l, n, "netd_bfd_down_routes_kept_total", fmt.Sprintf("peer=%q", v.OverlayAddr))
	}
	cutoffs := func(n string) float64 {
		return metric(t, l, n, "netd_bgp_peer_cutoffs_total", fmt.Sprintf("peer=%q", victim))
	}
	keptBefore, cutBefore := map[string]float64{}, map[string]float64{}
	for _, o := range others {
		keptBefore[o], cutBefore[o] = kept(o), cutoffs(o)
	}
	reapproved := tn.Reapprovals()
	if err := l.SignalNetd(victim, syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	thawed := false
	thaw := func() {
		if !thawed {
			thawed = true
			if err := l.SignalNetd(victim, syscall.SIGCONT); err != nil {
				t.Errorf("SIGCONT: %v", err)
			}
		}
	}
	defer thaw()
	took := testutil.Poll(t, 30*time.Second, "bfd down on the others, routes kept", func() (bool, error) {
		for _, o := range others {
			if kept(o) <= keptBefore[o] {
				return false, nil
			}
		}
		return true, nil
	})
	t.Logf("%s's netd frozen -> BFD down and its routes kept on %v after %v", victim, others, took.Round(time.Millisecond))

	excused := map[string]string{}
	end := time.Now().Add(2 * time.Second)
	for time.Now().Before(end) {
		for _, o := range others {
			ok, missing, err := l.HasRoutes(o, []string{victim})
			if err != nil {
				t.Fatal(err)
			}
			if ok {
				continue
			}
			why, err := notCarried(ctx, l, o, missing)
			if err != nil {
				t.Fatal(err)
			}
			if why == "" {
				t.Fatalf("%s dropped the frozen %s's routes %v %v after the freeze was seen (its netd log above says why)",
					o, victim, missing, took+2*time.Second-time.Until(end))
			}
			excused[o] = why
		}
		time.Sleep(50 * time.Millisecond)
	}
	for _, o := range others {
		if c := cutoffs(o); c != cutBefore[o] {
			t.Errorf("%s cut the frozen %s off (netd_bgp_peer_cutoffs_total %v -> %v): its path answered", o, victim, cutBefore[o], c)
		}
	}
	if len(excused) > 0 {
		t.Logf("the frozen node's routes were kept by netd, but left these kernels for a moment because the tailnet did not carry them (headscale re-approvals during the freeze: %d): %v",
			tn.Reapprovals()-reapproved, excused)
	}
	thaw()
	back := testutil.Poll(t, 120*time.Second, "BFD back after the thaw", func() (bool, error) {
		ok, err := blocksEverywhere(l, names(l), names(l))
		if !ok || err != nil {
			return ok, err
		}
		return bfdAdmittedEverywhere(ctx, l, st)
	})
	t.Logf("SIGCONT -> BFD back everywhere in %v", back.Round(time.Millisecond))
}

// notCarried returns why node's netd did not install missing: the reason
// its status gives when every one of them is a route Tailscale would
// drop (the control server does not serve it), "" otherwise.
func notCarried(ctx context.Context, l *lab.Lab, node string, missing []netip.Prefix) (string, error) {
	s, err := l.Status(ctx, node)
	if err != nil {
		return "", err
	}
	var ds daemon.Status
	if err := json.Unmarshal(s.Raw, &ds); err != nil {
		return "", fmt.Errorf("decoding status of %s: %w", node, err)
	}
	var why []string
	for _, p := range missing {
		found := false
		for _, u := range ds.Unroutable {
			if u.Prefix == p && strings.HasPrefix(u.Reason, "tailscale would drop it") {
				why = append(why, p.String()+": "+u.Reason)
				found = true
			}
		}
		if !found {
			return "", nil
		}
	}
	return strings.Join(why, "; "), nil
}
