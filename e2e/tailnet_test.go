package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/netd/localapi"
	"github.com/ducksnest/netd/policy/acldoc"
)

// TestTailnet runs the lab on a real tailnet: headscale in the WAN
// namespace, tailscaled with a real tailscale0 (TUN, WireGuard) in every
// node, BGP and BFD between the netds over tailscale0, the example's
// compiled tailnet policy applied through the acl package as a user
// deploys it (headscale enforces it; nothing is added by hand).
func TestTailnet(t *testing.T) {
	// Not parallel: it holds BFD's detection budget (a silent peer's routes
	// gone within 1 s) over the real tailnet; see doc.go.
	needRoot(t)
	_, err := os.Stat("/dev/net/tun")
	testutil.Require(t, err == nil, "tailscaled needs /dev/net/tun (the tun kernel module): %v", err)
	tc := tailscaleTools(t)
	data, err := os.ReadFile(policyPath)
	if err != nil {
		t.Fatal(err)
	}
	st := policyState(t, policyPath, data)
	name, dir := labName(), t.TempDir()
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
	var l *lab.Lab
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if l != nil {
			if t.Failed() {
				for _, n := range l.Nodes {
					t.Logf("--- netd log of %s:\n%s", n.Name, l.LogTail(n.Name, 20))
				}
			}
			if err := lab.DownTailnet(ctx, l); err != nil {
				t.Errorf("tailnet down: %v", err)
			}
		}
		if err := lab.Down(ctx, name, dir, log); err != nil {
			t.Errorf("lab down: %v", err)
		}
		if left, _ := filepath.Glob("/run/netns/" + name + "-*"); len(left) > 0 {
			t.Errorf("namespaces left after lab down: %v", left)
		}
		if left, _ := filepath.Glob("/etc/netns/" + name + "-*"); len(left) > 0 {
			t.Errorf("resolv.conf dirs left: %v", left)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 8*time.Minute)
	defer cancel()
	start := time.Now()
	l, tn, err := lab.UpTailscale(ctx, lab.Config{Name: name, State: st, Policy: data, Netd: netdBin, StateDir: dir,
		ConvergeTimeout: 90 * time.Second, Logger: log}, tc)
	if err != nil {
		if l != nil {
			if tn2, err2 := lab.LoadTailnet(l); err2 == nil {
				for n := range tn2.Socket {
					t.Logf("--- tailscaled log of %s:\n%s", n, testutil.TailFile(filepath.Join(tn2.Dir, n, "tailscaled.log"), 15))
				}
				t.Logf("--- headscale log:\n%s", testutil.TailFile(filepath.Join(tn2.Dir, "headscale.log"), 30))
			}
		}
		t.Fatal(err)
	}
	converged := time.Since(start)
	if err := l.CheckIsolation(ctx); err != nil {
		t.Fatal(err)
	}
	rep, err := l.Check(ctx, lab.CheckOptions{Timeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	connected := time.Since(start)
	overlayPairs := 0
	for _, p := range rep.Pairs {
		if !p.OK() {
			t.Errorf("pod %s -> %s over %s: icmp %s tcp %s %s", p.Src.Addr, p.Dst.Addr, p.Path, p.ICMP, p.TCP, p.Err)
		}
		if p.Path.Kind == lab.PathOverlay {
			overlayPairs++
		}
	}
	for _, m := range rep.MTU {
		if !m.OK() {
			t.Errorf("path MTU %s -> %s over %s: expected %d, at %s, above %s %s", m.Src, m.Dst, m.Path, m.Expected, m.At, m.Above, m.Err)
		}
	}
	if overlayPairs == 0 {
		t.Fatal("no pod pair crossed tailscale0")
	}
	t.Logf("MEASURE tailscale lab: up+converged in %v, all %d pod pairs (%d over tailscale0) connected %v after `lab up` (headscale re-approvals: %d)",
		converged.Round(time.Millisecond), len(rep.Pairs), overlayPairs, connected.Round(time.Millisecond), tn.Reapprovals())
	if t.Failed() {
		t.FailNow()
	}

	cp, _ := l.Node("control-plane")
	fb, _ := l.Node("firebat")
	src, dst := cp.Pods[0], fb.Pods[0]

	t.Run("bgp over tailscale0", func(t *testing.T) {
		for _, n := range l.Nodes {
			s, err := l.Status(ctx, n.Name)
			if err != nil {
				t.Fatal(err)
			}
			var raw struct {
				BGP struct {
					Peers []struct {
						Address netip.Addr
						State   string
					}
				}
			}
			if err := json.Unmarshal(s.Raw, &raw); err != nil {
				t.Fatal(err)
			}
			up := 0
			for _, p := range raw.BGP.Peers {
				if st.Networks.Overlay.Contains(p.Address) {
					if p.State != "established" {
						t.Errorf("%s: session to %s is %s", n.Name, p.Address, p.State)
					}
					up++
				}
			}
			if up != len(l.Nodes)-1 {
				t.Errorf("%s: %d overlay sessions, want %d", n.Name, up, len(l.Nodes)-1)
			}
		}
		// The sessions run over the tailnet: the control plane reaches
		// its peers only through tailscale0 (it has no LAN).
		hop, err := l.Path(src, dst.Addr)
		if err != nil || hop.Dev != "tailscale0" {
			t.Fatalf("control-plane pod -> firebat pod goes %v (%v), want tailscale0", hop, err)
		}
	})

	t.Run("bfd over tailscale0, silent peer", func(t *testing.T) {
		testBFDOverTailnet(ctx, t, l, tn, st)
	})

	t.Run("advertised routes", func(t *testing.T) {
		for _, n := range l.Nodes {
			a := &localapi.Advertiser{Client: tn.Client(n.Name)}
			s, err := a.Reconcile(ctx, n.PodCIDRs, st)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.Added)+len(s.Removed) != 0 || len(s.Unapproved) != 0 || len(s.NotAutoApproved) != 0 || !s.AcceptRoutes {
				t.Errorf("%s: %+v", n.Name, s)
			}
			if n.OverlayAddr == netip.MustParseAddr("100.64.0.1") && (len(s.UserRoutes) != 1 || s.UserRoutes[0] != tc.UserRoutes[0]) {
				t.Errorf("%s: the hand-advertised route was not kept: %+v", n.Name, s)
			}
		}
		peers, err := localapi.DiscoverPeers(ctx, tn.Client("control-plane"), st.Tailnet.NodeTag)
		if err != nil {
			t.Fatal(err)
		}
		if len(peers) != len(l.Nodes)-1 {
			t.Fatalf("discovered %+v", peers)
		}
		self, _ := st.Node("control-plane")
		if got := localapi.BGPPeers(self, peers); len(got) != len(self.BGP.Peers) {
			t.Fatalf("discovered peers %+v, policy peers %+v", got, self.BGP.Peers)
		}
	})

	t.Run("throughput", func(t *testing.T) {
		// WireGuard must run peer to peer, not through the DERP relay.
		testutil.Poll(t, 30*time.Second, "a direct WireGuard path control-plane -> firebat", func() (bool, error) {
			s, err := tn.Client("control-plane").Status(ctx)
			if err != nil {
				return false, err
			}
			for _, p := range s.Peer {
				if slices.Contains(p.TailscaleIPs, fb.OverlayAddr) {
					return p.CurAddr != "", nil
				}
			}
			return false, nil
		})
		echo, err := lab.StartEcho(l.AllPods())
		if err != nil {
			t.Fatal(err)
		}
		defer echo.Close()
		const n = 32 << 20
		var podBest, nodeBest time.Duration
		for range 3 { // alternate, keep the best of each: the machine is shared
			pod := l.Bulk(ctx, echo, src, dst, n)
			if pod.Err != "" {
				t.Fatal(pod.Err)
			}
			node, err := nodeBulk(ctx, cp, fb, n)
			if err != nil {
				t.Fatal(err)
			}
			if podBest == 0 || pod.Took < podBest {
				podBest = pod.Took
			}
			if nodeBest == 0 || node < nodeBest {
				nodeBest = node
			}
		}
		mbps := func(d time.Duration) float64 { return float64(n) * 8 / d.Seconds() / 1e6 }
		t.Logf("MEASURE tcp echo %d MiB over tailscale0, direct WireGuard (control-plane -> firebat), best of 3: pod-to-pod %.0f Mbit/s, node-to-node %.0f Mbit/s (pod/node %.2f)",
			n>>20, mbps(podBest), mbps(nodeBest), nodeBest.Seconds()/podBest.Seconds())
	})

	target := tn.ACLTarget()
	podOK := func(timeout time.Duration) error {
		echo, err := lab.StartEcho([]lab.Pod{dst})
		if err != nil {
			return err
		}
		defer echo.Close()
		ap, _ := echo.Addr(dst.Addr)
		_, err = lab.TCPEcho(ctx, src, ap, []byte("ping"), timeout)
		return err
	}

	t.Run("policy grant removed and restored", func(t *testing.T) {
		cut := withoutPodGrant(t, st.Tailnet.Tailscale.HuJSON)
		c, err := acl.Diff(ctx, target, cut)
		if err != nil || c.Drift != "" || c.Unchanged {
			t.Fatalf("diff: %+v %v", c, err)
		}
		applied := time.Now()
		if res, err := acl.Apply(ctx, target, cut, acl.Options{}); err != nil || !res.Written {
			t.Fatalf("apply without the pod grant: %+v %v", res, err)
		}
		t.Logf("apply without the pod grant returned after %v", time.Since(applied).Round(time.Millisecond))
		var blocked time.Duration
		testutil.Poll(t, 60*time.Second, "pod traffic blocked", func() (bool, error) {
			if podOK(300*time.Millisecond) == nil {
				return false, nil
			}
			at := time.Since(applied)
			if podOK(time.Second) == nil { // a slow connect, not the policy
				return false, nil
			}
			blocked = at
			return true, nil
		})
		if _, err := nodeBulk(ctx, cp, fb, 1024); err != nil {
			t.Fatalf("node-to-node traffic (kubelet port) was blocked too: %v", err)
		}
		applied2 := time.Now()
		if res, err := acl.Apply(ctx, target, &st.Tailnet, acl.Options{}); err != nil || !res.Written {
			t.Fatalf("restore: %+v %v", res, err)
		}
		testutil.Poll(t, 60*time.Second, "pod traffic restored", func() (bool, error) {
			return podOK(300*time.Millisecond) == nil, nil
		})
		restored := time.Since(applied2)
		if res, err := acl.Apply(ctx, target, &st.Tailnet, acl.Options{}); err != nil || res.Written {
			t.Fatalf("second apply of the same policy wrote: %+v %v", res, err)
		}
		t.Logf("MEASURE policy apply -> enforced: pod grant removed, traffic blocked %v after the apply began; restored, flowing %v after (probes of 300 ms)",
			blocked.Round(time.Millisecond), restored.Round(time.Millisecond))
	})

	t.Run("headscale rejects, nothing written", func(t *testing.T) {
		// autogroup:member is valid Tailscale but unknown to headscale
		// 0.26.1: `headscale policy check` must stop the write.
		p, err := acldoc.Parse(st.Tailnet.Tailscale.HuJSON)
		if err != nil {
			t.Fatal(err)
		}
		p.Grants = append(p.Grants, acldoc.Grant{Src: []string{"autogroup:member"}, Dst: []string{"tag:k8s-node"}, IP: []string{"tcp:443"}})
		doc, err := acldoc.Render(p, []string{"e2e: a grant headscale 0.26.1 cannot take"})
		if err != nil {
			t.Fatal(err)
		}
		bad, err := acldoc.Desired(doc)
		if err != nil {
			t.Fatal(err)
		}
		before, err := acl.Diff(ctx, target, &st.Tailnet)
		if err != nil || !before.Unchanged {
			t.Fatalf("before: %+v %v", before, err)
		}
		if _, err := acl.Apply(ctx, target, &bad, acl.Options{}); !errors.Is(err, acl.ErrInvalid) || !strings.Contains(err.Error(), "autogroup") {
			t.Fatalf("apply of a policy headscale rejects: %v, want ErrInvalid", err)
		}
		if after, err := acl.Diff(ctx, target, &st.Tailnet); err != nil || string(after.Live) != string(before.Live) {
			t.Fatalf("the live policy changed: %v", err)
		}
	})

	t.Run("policy diff validates with headscale", func(t *testing.T) {
		// `netd policy diff` as CI runs it, with the credentials in the
		// environment, from the WAN namespace where headscale listens.
		diff := func(file string) (int, string) {
			cmd := exec.CommandContext(ctx, "ip", "netns", "exec", tn.WAN, netdBin, "policy", "diff", file, "--only", "tailnet")
			cmd.Env = append(os.Environ(), "HEADSCALE_URL="+tn.URL, "HEADSCALE_API_KEY="+tn.APIKey, "HEADSCALE_CLI="+tc.HeadscaleBin)
			out, err := cmd.CombinedOutput()
			var ee *exec.ExitError
			if err != nil && !errors.As(err, &ee) {
				t.Fatal(err)
			}
			return cmd.ProcessState.ExitCode(), string(out)
		}
		code, out := diff(policyPath)
		if code != 0 || !strings.Contains(out, "validation: valid (headscale policy check") || !strings.Contains(out, "tailnet: no changes") {
			t.Fatalf("diff of the applied policy: exit %d\n%s", code, out)
		}
		t.Logf("netd policy diff against headscale:\n%s", out)
		// A policy headscale 0.26.1 rejects (autogroup:member): the diff
		// reports headscale's answer and fails; nothing is written.
		bad := strings.Replace(string(data), "    grants:\n", "    grants:\n      - src: [autogroup:member]\n        dst: [tag:k8s-node]\n        ip: [\"tcp:443\"]\n", 1)
		if bad == string(data) {
			t.Fatal("could not add the grant")
		}
		file := filepath.Join(t.TempDir(), "policy.yaml")
		if err := os.WriteFile(file, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		code, out = diff(file)
		if code != 3 || !strings.Contains(out, "validation: REJECTED by headscale policy check") || !strings.Contains(out, "autogroup") {
			t.Fatalf("diff of a policy headscale rejects: exit %d\n%s", code, out)
		}
		if c, err := acl.Diff(ctx, target, &st.Tailnet); err != nil || !c.Unchanged {
			t.Fatalf("the live policy changed: %+v %v", c, err)
		}
	})

	t.Run("manual edit is drift", func(t *testing.T) {
		c, err := acl.Diff(ctx, target, &st.Tailnet)
		if err != nil || !c.Unchanged {
			t.Fatalf("before edit: %+v %v", c, err)
		}
		edited := strings.Replace(string(c.Live), `"tag:k8s-node:22"`, `"tag:k8s-node:22", "tag:k8s-node:2222"`, 1)
		if edited == string(c.Live) {
			t.Fatal("edit did not apply")
		}
		file := filepath.Join(t.TempDir(), "edited.hujson")
		if err := os.WriteFile(file, []byte(edited), 0o600); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.CommandContext(ctx, tc.HeadscaleBin, "-c", filepath.Join(tn.Dir, "headscale.yaml"), "policy", "set", "-f", file).CombinedOutput(); err != nil {
			t.Fatalf("headscale policy set: %v\n%s", err, out)
		}
		c, err = acl.Diff(ctx, target, &st.Tailnet)
		if err != nil || !strings.Contains(c.Drift, "edited after netd applied it") || !strings.Contains(c.Diff, "tag:k8s-node:2222") {
			t.Fatalf("drift not detected: %+v %v", c, err)
		}
		if _, err := acl.Apply(ctx, target, &st.Tailnet, acl.Options{}); !errors.Is(err, acl.ErrDrift) {
			t.Fatalf("apply over a manual edit: %v, want ErrDrift", err)
		}
		if c2, _ := acl.Diff(ctx, target, &st.Tailnet); string(c2.Live) != edited {
			t.Fatal("the manual edit was overwritten")
		}
		if res, err := acl.Apply(ctx, target, &st.Tailnet, acl.Options{Force: true}); err != nil || !res.Written {
			t.Fatalf("forced apply: %+v %v", res, err)
		}
	})

	t.Run("tailscaled restart", func(t *testing.T) {
		if err := podOK(3 * time.Second); err != nil {
			t.Fatalf("pod traffic before the restart: %v", err)
		}
		start := time.Now()
		if err := tn.RestartTailscaled(ctx, "control-plane"); err != nil {
			t.Fatal(err)
		}
		back := testutil.Poll(t, 90*time.Second, "pod traffic after restarting tailscaled", func() (bool, error) {
			return podOK(2*time.Second) == nil, nil
		})
		t.Logf("MEASURE tailscaled restart on control-plane: pod traffic back %v after the restart began (%v after tailscaled was up)",
			time.Since(start).Round(time.Millisecond), back.Round(time.Millisecond))
		// tailscale0 went away with tailscaled, and the kernel dropped
		// netd's routes through it; until netd puts them back, table 52
		// (accept-routes) carries the traffic. netd must restore its own.
		testutil.Poll(t, 90*time.Second, "netd routes on control-plane after the restart", func() (bool, error) {
			ok, _, err := l.HasRoutes("control-plane", others(l, "control-plane"))
			return ok, err
		})
		t.Logf("MEASURE tailscaled restart on control-plane: netd's routes back %v after the restart began", time.Since(start).Round(time.Millisecond))
		rep, err := l.Check(ctx, lab.CheckOptions{Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if !rep.OK() {
			for _, p := range rep.Pairs {
				if !p.OK() {
					t.Errorf("after restart: pod %s -> %s: icmp %s tcp %s %s", p.Src.Addr, p.Dst.Addr, p.ICMP, p.TCP, p.Err)
				}
			}
		}
	})

	// Last: it leaves BFD dampened (hold-downs doubled) for a minute.
	t.Run("bfd grant removed and restored", func(t *testing.T) {
		testBFDGrant(ctx, t, l, st, target)
	})
}
