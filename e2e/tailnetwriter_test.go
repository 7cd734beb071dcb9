package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/lab"
)

// TestTailnetWriter runs the tailnet lab with tailnet credentials in every
// netd (as the NixOS module gives them). Without Kubernetes, the node the
// example policy names (spec.tailnetSync.writer: control-plane) keeps the
// tailnet policy in sync on the real headscale: a change of the policy
// file is enforced by the nodes' tailscaled (timed), an edit made with
// `headscale policy set` is reported and left alone (and overwritten once
// the policy says ownership: exclusive), a broken file changes nothing, and
// a node the policy names takes over from a killed writer. Then every netd
// restarts with a kubeconfig of its own RBAC identity against a real
// kube-apiserver: exactly one netd, the netd-tailnet Lease holder, writes;
// killed, another takes the Lease and writes, and drift is an Event.
func TestTailnetWriter(t *testing.T) {
	needRoot(t)
	t.Parallel() // see doc.go
	_, err := os.Stat("/dev/net/tun")
	testutil.Require(t, err == nil, "tailscaled needs /dev/net/tun (the tun kernel module): %v", err)
	// The example policy, re-checked every 2 s instead of every minute.
	base := string(examplePolicy(t, "interval: 1m", "interval: 2s"))
	start := time.Now()
	l, tn := upTailnetLab(t, []byte(base), func(tc *lab.TailnetConfig) { tc.Credentials = true })
	t.Logf("MEASURE tailnet lab up with the tailnet writer: %v", time.Since(start).Round(time.Millisecond))
	headscale := tailscaleTools(t).HeadscaleBin
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	cp, _ := l.Node("control-plane")
	fb, _ := l.Node("firebat")
	target := tn.ACLTarget()

	// write replaces the policy file every netd watches, as an editor or
	// a deployment does (a new file renamed over the old one).
	write := func(text string) time.Time {
		t.Helper()
		tmp := l.PolicyPath + ".new"
		if err := os.WriteFile(tmp, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		at := time.Now()
		if err := os.Rename(tmp, l.PolicyPath); err != nil {
			t.Fatal(err)
		}
		return at
	}
	// grant adds a grant from the on-prem nodes to the control plane on
	// port to the policy text.
	grant := func(text string, port uint16) string {
		return strings.Replace(text, "    grants:\n", fmt.Sprintf("    grants:\n      - src: [tag:onprem]\n        dst: [tag:aws]\n        ip: [\"tcp:%d\"]\n", port), 1)
	}
	// reachable says whether firebat reaches a listener on the control
	// plane's tailnet address and port: the policy decides.
	listen := func(port uint16) netip.AddrPort {
		ap := netip.AddrPortFrom(cp.OverlayAddr, port)
		var ln net.Listener
		if err := lab.InNS(cp.NS, func() error {
			var err error
			ln, err = net.Listen("tcp4", ap.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				c.Close()
			}
		}()
		return ap
	}
	reachable := func(ap netip.AddrPort) bool {
		return dialFrom(fb.NS, netip.AddrPortFrom(fb.OverlayAddr, 0), ap, 150*time.Millisecond) == nil
	}
	// enforced writes text and returns how long the tailnet took to let
	// firebat reach ap, and when the file was written.
	enforced := func(text string, ap netip.AddrPort) (time.Duration, time.Time) {
		t.Helper()
		if reachable(ap) {
			t.Fatalf("%s is reachable before the policy allows it", ap)
		}
		at := write(text)
		// Every 20 ms: a refused connect returns at once.
		_, err := testutil.Every(20*time.Millisecond).Wait(ctx, 30*time.Second, "the policy change allowing "+ap.String()+" enforced", func() (bool, error) {
			return reachable(ap), nil
		})
		if err != nil {
			t.Fatalf("%v\n%s", err, l.LogTail("control-plane", 20))
		}
		return time.Since(at), at
	}
	// live reads the live policy and compares it with the policy text.
	live := func(text string) acl.Change {
		t.Helper()
		c, err := acl.Diff(ctx, target, mustState(t, text).tailnet)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}

	text := base
	t.Run("the named node writes, the others stand by", func(t *testing.T) {
		for _, n := range l.Nodes {
			s := tailnetStatus(ctx, t, l, n.Name)
			if s.Writer != "control-plane" || s.Leading != (n.Name == "control-plane") {
				t.Errorf("%s: %+v", n.Name, s)
			}
		}
		statusPoll.Eventually(t, 20*time.Second, "the writer in sync with every pod block approved", func() bool {
			s := tailnetStatus(ctx, t, l, "control-plane")
			return s.InSync && s.RoutesChecked && len(s.RouteProblems) == 0
		})
		if v := metric(t, l, "control-plane", "netd_tailnet_policy_writer", ""); v != 1 {
			t.Errorf("netd_tailnet_policy_writer on the writer = %v", v)
		}
		// lab up applied the same policy before the nodes joined: the
		// writer found nothing to change.
		if w := tailnetStatus(ctx, t, l, "control-plane").Writes; w != 0 {
			t.Errorf("the writer wrote %d times an unchanged policy", w)
		}
	})

	t.Run("a policy change is enforced", func(t *testing.T) {
		var took, wrote []time.Duration
		for i := range 3 {
			ap := listen(uint16(7101 + i))
			text = grant(text, ap.Port())
			d, fileAt := enforced(text, ap)
			took = append(took, d)
			// headscale's updatedAt is the time of the write.
			c := live(text)
			at, err := time.Parse(time.RFC3339Nano, c.LiveVersion)
			if err != nil || !c.Unchanged {
				t.Fatalf("live policy after the change: %+v (%v)", c, err)
			}
			wrote = append(wrote, at.Sub(fileAt))
		}
		t.Logf("MEASURE tailnet policy file change -> enforced by tailscaled (firebat reaches control-plane on the new port): median %v of %v; of which file change -> written to headscale: median %v of %v",
			median(took).Round(time.Millisecond), took, median(wrote).Round(time.Millisecond), wrote)
		// Where the write time goes: the writer's log has the reload
		// (file watch + compile) and the end of the apply (headscale API).
		var api []time.Duration
		var reloaded time.Time
		for _, e := range logEntries(t, l, "control-plane") {
			switch e.Msg {
			case "policy reloaded":
				reloaded = e.Time
			case "tailnet policy applied":
				if !reloaded.IsZero() {
					api = append(api, e.Time.Sub(reloaded))
					reloaded = time.Time{}
				}
			}
		}
		if len(api) >= 3 {
			api = api[len(api)-3:]
			t.Logf("MEASURE of which policy reloaded -> applied on headscale (read, validate, If-Match write): median %v of %v", median(api).Round(time.Millisecond), api)
		}
	})

	t.Run("a headscale policy set edit is drift, left alone", func(t *testing.T) {
		c := live(text)
		if !c.Unchanged || c.Drift != "" {
			t.Fatalf("before the edit: %+v", c)
		}
		edited := strings.Replace(string(c.Live), `"tag:k8s-node:22"`, `"tag:k8s-node:22", "tag:k8s-node:2222"`, 1)
		file := tempFile(t, "edited.hujson", []byte(edited))
		at := time.Now()
		if out, err := exec.CommandContext(ctx, headscale, "-c", filepath.Join(tn.Dir, "headscale.yaml"), "policy", "set", "-f", file).CombinedOutput(); err != nil {
			t.Fatalf("headscale policy set: %v\n%s", err, out)
		}
		statusPoll.Eventually(t, 20*time.Second, "drift reported by the writer", func() bool {
			return tailnetStatus(ctx, t, l, "control-plane").Drift != ""
		})
		t.Logf("MEASURE headscale policy set -> drift reported by the writer: %v (re-check every 2s)", time.Since(at).Round(time.Millisecond))
		waitChecks(ctx, t, l, "control-plane", 3)
		s := tailnetStatus(ctx, t, l, "control-plane")
		if !strings.Contains(s.Drift, "edited after netd applied it") || !strings.Contains(s.DriftDiff, "2222") || s.Blocked == "" {
			t.Errorf("status %+v", s)
		}
		if got := string(live(text).Live); got != edited {
			t.Fatal("the writer overwrote the edit")
		}
		if v := metric(t, l, "control-plane", "netd_tailnet_policy_drift", ""); v != 1 {
			t.Errorf("netd_tailnet_policy_drift = %v, want 1", v)
		}
		if n := logCount(t, l, "control-plane", "tailnet policy edited outside netd"); n != 1 {
			t.Errorf("%d drift log lines over several re-checks, want 1", n)
		}
		// A policy change is not applied over the edit either.
		ap := listen(7110)
		write(grant(text, ap.Port()))
		waitChecks(ctx, t, l, "control-plane", 2)
		if got := string(live(text).Live); got != edited || reachable(ap) {
			t.Fatal("a policy change was applied over the edit")
		}
		if err := podTraffic(ctx, l); err != nil {
			t.Fatalf("pod traffic with the edited policy: %v", err)
		}
		// ownership: exclusive: netd owns the policy, the edit goes.
		text = strings.Replace(grant(text, ap.Port()), "ownership: shared", "ownership: exclusive", 1)
		write(text)
		statusPoll.Eventually(t, 20*time.Second, "the edit overwritten (ownership: exclusive)", func() bool {
			c := live(text)
			return c.Unchanged && c.Drift == ""
		})
		statusPoll.Eventually(t, 20*time.Second, "drift resolved and the port allowed", func() bool {
			return tailnetStatus(ctx, t, l, "control-plane").Drift == "" && reachable(ap)
		})
	})

	t.Run("a broken policy file changes nothing", func(t *testing.T) {
		before := live(text)
		for _, broken := range []string{
			text + "\n  nodes: [\n", // YAML syntax
			strings.Replace(text, "dst: [tag:aws]", "dst: [tag:nowhere]", 1), // an unknown tag
		} {
			write(broken)
			for _, n := range l.Nodes {
				statusPoll.Eventually(t, 10*time.Second, n.Name+" rejects the file", func() bool {
					return policyStatus(ctx, t, l, n.Name).LastError != ""
				})
			}
			waitChecks(ctx, t, l, "control-plane", 2)
			if after := live(text); after.LiveVersion != before.LiveVersion || string(after.Live) != string(before.Live) {
				t.Fatalf("a broken policy file changed the tailnet policy (%s -> %s)", before.LiveVersion, after.LiveVersion)
			}
		}
		write(text)
		for _, n := range l.Nodes {
			statusPoll.Eventually(t, 10*time.Second, n.Name+" takes the good file again", func() bool {
				return policyStatus(ctx, t, l, n.Name).LastError == ""
			})
		}
	})

	t.Run("a killed writer is replaced by the node the policy names", func(t *testing.T) {
		// Without Kubernetes there is no Lease to expire: the policy names
		// the writer, so the hand-over is a policy change.
		if err := syscall.Kill(cp.Netd.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		statusPoll.Eventually(t, 10*time.Second, "the writer's netd gone", func() bool { return !l.NetdRunning("control-plane") })
		ap := listen(7120)
		next := strings.Replace(grant(text, ap.Port()), "writer: control-plane", "writer: firebat", 1)
		took, _ := enforced(next, ap)
		t.Logf("MEASURE writer killed, policy names firebat: its policy change enforced %v after the file changed", took.Round(time.Millisecond))
		if s := tailnetStatus(ctx, t, l, "firebat"); !s.Leading || !s.InSync {
			t.Fatalf("firebat: %+v", s)
		}
		if err := l.StopNetd(ctx, "control-plane", time.Second); err != nil {
			t.Fatal(err)
		}
		if err := l.StartNetd(ctx, "control-plane"); err != nil {
			t.Fatal(err)
		}
		statusPoll.Eventually(t, 20*time.Second, "control-plane back as a standby", func() bool {
			s, err := l.Status(ctx, "control-plane")
			if err != nil || !s.Ready {
				return false
			}
			ts := tailnetStatus(ctx, t, l, "control-plane")
			return !ts.Leading && ts.Writer == "firebat"
		})
		if err := podTraffic(ctx, l); err != nil {
			t.Fatalf("pod traffic after the hand-over: %v", err)
		}
	})

	t.Run("with Kubernetes the Lease holder writes; killed, another takes over", func(t *testing.T) {
		ks := kubetest.Start(t)
		admin, err := kube.NewClient(ks.Config)
		if err != nil {
			t.Fatal(err)
		}
		// Calico IPAM gives each node the blocks the policy lists.
		for _, n := range l.Nodes {
			for _, b := range n.PodCIDRs {
				addAffinity(ctx, t, admin, n.Name, b)
			}
		}
		u, err := url.Parse(tn.URL)
		if err != nil {
			t.Fatal(err)
		}
		kc := apiForwarder(t, l.WAN, u.Hostname(), ks) // on the lab's underlay, beside headscale
		l.NetdArgs = map[string][]string{}
		for _, n := range l.Nodes {
			l.NetdArgs[n.Name] = []string{"--kubeconfig", kc(n.Name)}
			if err := l.StopNetd(ctx, n.Name, 5*time.Second); err != nil {
				t.Fatal(err)
			}
			if err := l.StartNetd(ctx, n.Name); err != nil {
				t.Fatal(err)
			}
		}
		cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
		defer cancel()
		if err := l.WaitConverged(cctx, names(l)); err != nil {
			for _, n := range l.Nodes {
				st, serr := l.Status(ctx, n.Name)
				if serr != nil {
					t.Logf("status of %s: %v", n.Name, serr)
					continue
				}
				t.Logf("status of %s: %s", n.Name, st.Raw)
			}
			t.Fatal(err)
		}
		// leader waits until exactly one netd holds the Lease, every netd
		// names it, and it is in sync; not is a former holder.
		leader := func(not string) string {
			var holder string
			statusPoll.Eventually(t, 60*time.Second, "one netd-tailnet Lease holder, in sync", func() bool {
				var leading []string
				writers := map[string]bool{}
				for _, n := range l.Nodes {
					if n.Name == not {
						continue
					}
					s := tailnetStatus(ctx, t, l, n.Name)
					if s.Mode != "lease kube-system/netd-tailnet" {
						return false
					}
					writers[s.Writer] = true
					if s.Leading {
						leading = append(leading, n.Name)
						if !s.InSync {
							return false
						}
					}
				}
				if len(leading) != 1 || len(writers) != 1 || !writers[leading[0]] {
					return false
				}
				holder = leading[0]
				return true
			})
			return holder
		}
		first := leader("")
		ap := listen(7130)
		text = grant(text, ap.Port())
		took, _ := enforced(text, ap)
		t.Logf("MEASURE with Kubernetes: policy file change -> enforced, written by the Lease holder %s: %v", first, took.Round(time.Millisecond))

		n, _ := l.Node(first)
		killed := time.Now()
		if err := syscall.Kill(n.Netd.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		next := leader(first)
		t.Logf("MEASURE with Kubernetes: Lease holder %s killed (no release) -> %s writes, in sync: %v (Lease duration 15s)",
			first, next, time.Since(killed).Round(time.Millisecond))
		ap = listen(7131)
		text = grant(text, ap.Port())
		took, _ = enforced(text, ap)
		t.Logf("MEASURE with Kubernetes: the new holder's policy change enforced %v after the file changed", took.Round(time.Millisecond))

		// Drift is a Kubernetes Event from the holder; with ownership:
		// exclusive it is reported, then overwritten.
		text = strings.Replace(text, "ownership: shared", "ownership: exclusive", 1)
		write(text)
		edited := strings.Replace(string(live(text).Live), `"tag:k8s-node:22"`, `"tag:k8s-node:22", "tag:k8s-node:2222"`, 1)
		if out, err := exec.CommandContext(ctx, headscale, "-c", filepath.Join(tn.Dir, "headscale.yaml"), "policy", "set", "-f",
			tempFile(t, "edited.hujson", []byte(edited))).CombinedOutput(); err != nil {
			t.Fatalf("headscale policy set: %v\n%s", err, out)
		}
		testutil.Poll(t, 30*time.Second, "a TailnetPolicyDrift event from "+next, func() (bool, error) {
			evs, err := admin.Dynamic.Resource(kube.Events).Namespace(kube.EventNamespace).List(ctx, metav1.ListOptions{})
			if err != nil {
				return false, err
			}
			for _, e := range evs.Items {
				reason, _, _ := unstructured.NestedString(e.Object, "reason")
				host, _, _ := unstructured.NestedString(e.Object, "source", "host")
				if reason == "TailnetPolicyDrift" && host == next {
					return true, nil
				}
			}
			return false, nil
		})
		statusPoll.Eventually(t, 20*time.Second, "the edit overwritten (exclusive)", func() bool {
			c := live(text)
			return c.Unchanged && c.Drift == ""
		})

		// The killed netd comes back as a standby.
		if err := l.StopNetd(ctx, first, time.Second); err != nil {
			t.Fatal(err)
		}
		if err := l.StartNetd(ctx, first); err != nil {
			t.Fatal(err)
		}
		statusPoll.Eventually(t, 30*time.Second, first+" back as a standby", func() bool {
			s, err := l.Status(ctx, first)
			if err != nil || !s.Ready {
				return false
			}
			ts := tailnetStatus(ctx, t, l, first)
			return !ts.Leading && ts.Writer == next
		})
		if err := podTraffic(ctx, l); err != nil {
			t.Fatalf("pod traffic: %v", err)
		}
	})
}
