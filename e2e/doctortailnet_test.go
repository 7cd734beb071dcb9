package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"

	"github.com/ducksnest/netd/netd/doctor"
	"github.com/ducksnest/netd/netd/lab"
)

// TestDoctorTailnet runs `netd doctor` on the tailnet lab (real tailscaled
// and headscale) for the checks that read tailscaled: its prefs, the
// approval of the pod blocks, and tailscaled's own firewall rules
// (netfilter mode on) for the CGNAT drop rule and the mark overlap. One
// lab; each subtest injects and undoes.
func TestDoctorTailnet(t *testing.T) {
	t.Parallel() // see doc.go
	needRoot(t)
	needFirewallTools(t)
	l, tn := upTailnetLab(t, withoutExternalPeers(t, examplePolicy(t)))
	ctx := t.Context()
	fb, _ := l.Node("firebat")
	ul, _ := l.Node("ultra")
	doc := func(t *testing.T, node string, args ...string) (*doctor.Report, int) {
		t.Helper()
		return runDoctor(t, l, node, append([]string{"--tailscale-socket", tn.Socket[node]}, args...)...)
	}
	ts := func(t *testing.T, node string, args ...string) {
		t.Helper()
		if out, err := exec.CommandContext(ctx, tn.TailscaleBin, append([]string{"--socket=" + tn.Socket[node]}, args...)...).CombinedOutput(); err != nil {
			t.Fatalf("tailscale %v on %s: %v: %s", args, node, err, out)
		}
	}

	t.Run("clean tailnet passes", func(t *testing.T) {
		testutil.Poll(t, 30*time.Second, "a clean report on every node", func() (bool, error) {
			var bad []string
			for _, n := range l.Nodes {
				rep, code := doc(t, n.Name)
				for _, f := range rep.Findings {
					switch {
					case f.Result == doctor.Pass, f.Result == doctor.Skip && f.ID == "felix/config":
					case f.ID == "netd/bfd" && f.Result == doctor.Warn:
						// The generated tailnet policy does not let BFD
						// (UDP 3784) through yet (issue 12): the doctor
						// says so, as a warning.
					default:
						bad = append(bad, fmt.Sprintf("%s: %s %s: %s %v", n.Name, f.ID, f.Result, f.Summary, f.Evidence))
					}
					if f.ID == "netd/bfd" && n.Name == "firebat" {
						t.Logf("%s: %s %s: %s %v", n.Name, f.ID, f.Result, f.Summary, f.Evidence)
					}
				}
				if code != 0 {
					bad = append(bad, fmt.Sprintf("%s: exit %d", n.Name, code))
				}
			}
			if len(bad) > 0 {
				t.Logf("not clean yet: %v", bad)
			}
			return len(bad) == 0, nil
		})
	})

	t.Run("accept-routes off", func(t *testing.T) {
		ts(t, "firebat", "set", "--accept-routes=false")
		t.Cleanup(func() { ts(t, "firebat", "set", "--accept-routes=true") })
		rep, code := doc(t, "firebat", "--only", "tailscale")
		wantFinding(t, rep, code, "tailscale/accept-routes", doctor.Fail, "prefs RouteAll = false")
	})

	t.Run("SNAT of subnet routes on", func(t *testing.T) {
		ts(t, "firebat", "set", "--snat-subnet-routes=true")
		t.Cleanup(func() { ts(t, "firebat", "set", "--snat-subnet-routes=false") })
		rep, code := doc(t, "firebat", "--only", "tailscale")
		wantFinding(t, rep, code, "tailscale/snat-subnet-routes", doctor.Fail, "prefs NoSNAT = false")
	})

	t.Run("pod block not approved", func(t *testing.T) {
		id := headscaleID(t, tn, fb.OverlayAddr)
		hs := func(routes string) {
			out, err := exec.CommandContext(ctx, tn.HeadscaleBin, "-c", filepath.Join(tn.Dir, "headscale.yaml"), "nodes", "approve-routes", "-i", id, "-r", routes).CombinedOutput()
			if err != nil {
				t.Fatalf("headscale approve-routes %q: %v: %s", routes, err, out)
			}
		}
		hs("")
		t.Cleanup(func() {
			hs(fb.PodCIDRs[0].String())
			if err := tn.WaitRoutes(context.Background(), 60*time.Second); err != nil {
				t.Error(err)
			}
		})
		var rep *doctor.Report
		var code int
		testutil.Poll(t, 30*time.Second, "firebat's tailscaled to see its block unapproved", func() (bool, error) {
			rep, code = doc(t, "firebat", "--only", "tailscale")
			return rep.Result == doctor.Fail, nil
		})
		wantFinding(t, rep, code, "tailscale/approved", doctor.Fail, "self AllowedIPs = [100.64.0.1/32], PrimaryRoutes = []")
	})

	t.Run("pod block not advertised", func(t *testing.T) {
		// netd keeps the advertised routes equal to the blocks; without
		// it running, a hand edit stays.
		if err := l.StopNetd(ctx, "firebat", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := l.StartNetd(context.Background(), "firebat"); err != nil {
				t.Error(err)
			}
			if err := tn.WaitRoutes(context.Background(), 60*time.Second); err != nil {
				t.Error(err)
			}
			cctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if err := l.WaitConverged(cctx, names(l)); err != nil {
				t.Error(err)
			}
		})
		ts(t, "firebat", "set", "--advertise-routes=")
		rep, code := doc(t, "firebat", "--only", "tailscale")
		wantFinding(t, rep, code, "tailscale/advertised", doctor.Fail, "prefs AdvertiseRoutes = []", "this node's pod blocks (the policy) = ["+fb.PodCIDRs[0].String()+"]")
	})

	// tailscaled's own firewall rules from here on (netfilter mode on,
	// the default outside the lab).
	for _, n := range []string{"firebat", "ultra"} {
		ts(t, n, "set", "--netfilter-mode=on")
	}
	t.Cleanup(func() {
		for _, n := range []string{"firebat", "ultra"} {
			_ = exec.Command(tn.TailscaleBin, "--socket="+tn.Socket[n], "set", "--netfilter-mode=off").Run()
			_ = exec.Command("ip", "netns", "exec", l.Name+"-"+n, "nft", "flush", "ruleset").Run()
		}
	})

	t.Run("CGNAT drop rule", func(t *testing.T) {
		rep, code := doc(t, "firebat", "--only", "cgnat")
		wantFinding(t, rep, code, "cgnat/drop-rule", doctor.Pass, "rule: -A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP",
			"route get 100.64.0.2 from 100.64.0.1 (ultra): dev tailscale0 table 52")
		// It drops no pod traffic: pod pairs over the LAN and over the
		// tailnet answer with the rule on both ends.
		cp, _ := l.Node("control-plane")
		for _, p := range [][2]lab.Pod{{fb.Pods[0], ul.Pods[0]}, {ul.Pods[0], fb.Pods[0]}, {fb.Pods[0], cp.Pods[0]}} {
			if r, err := lab.Ping(ctx, p[0].NS, p[0].Addr, p[1].Addr, 84, false, 3*time.Second); err != nil || !r.Reply {
				t.Errorf("pod %s -> %s with tailscaled's rules on: %v %v", p[0].Addr, p[1].Addr, r, err)
			}
		}
		bgp := netip.AddrPortFrom(ul.OverlayAddr, 179)
		if err := dialFrom(fb.NS, netip.AddrPortFrom(fb.OverlayAddr, 0), bgp, 3*time.Second); err != nil {
			t.Fatalf("firebat -> ultra's BGP port over tailscale0: %v", err)
		}
		// A route that takes ultra's overlay address over the LAN: the
		// doctor fails it, and ultra's ts-input drops what firebat sends
		// from its overlay address (a TCP connect to ultra's BGP port).
		// Registered first, so it runs last (cleanups run in reverse): the
		// lab converges again once the route and rule below are gone. (BFD
		// over the tailnet takes firebat and ultra's routes down within a
		// second of the misroute, so it cannot converge before.)
		t.Cleanup(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			if err := l.WaitConverged(cctx, names(l)); err != nil {
				t.Error(err)
			}
		})
		nsRun(t, fb.NS, fmt.Sprintf("ip route add %s via %s dev eth0 table 100", ul.OverlayAddr, ul.LANAddr), fmt.Sprintf("ip route del %s table 100", ul.OverlayAddr))
		nsRun(t, fb.NS, fmt.Sprintf("ip rule add priority 100 to %s lookup 100", ul.OverlayAddr), fmt.Sprintf("ip rule del priority 100 to %s lookup 100", ul.OverlayAddr))
		rep, code = doc(t, "firebat", "--only", "cgnat")
		wantFinding(t, rep, code, "cgnat/drop-rule", doctor.Fail, "route get 100.64.0.2 from 100.64.0.1 (ultra): dev eth0 table 100 via "+ul.LANAddr.String(),
			"leaves through eth0, not tailscale0: ultra's tailscaled drops it")
		before := cgnatDrops(t, ul.NS)
		if err := dialFrom(fb.NS, netip.AddrPortFrom(fb.OverlayAddr, 0), bgp, 2*time.Second); err == nil {
			t.Error("firebat reached ultra's BGP port from its overlay address over the LAN: ultra's CGNAT rule did not drop it")
		} else {
			t.Logf("firebat -> ultra's BGP port over the LAN from %s: %v", fb.OverlayAddr, err)
		}
		if after := cgnatDrops(t, ul.NS); after <= before {
			t.Errorf("ultra's CGNAT drop rule counted %d packets before the connect and %d after: something else dropped it", before, after)
		}
	})

	t.Run("fwmark overlap with tailscaled's rules", func(t *testing.T) {
		// kube-proxy's and Felix's rules (default mark mask) next to
		// tailscaled's real ones.
		var keep []string
		for _, line := range strings.Split(string(mustReadFile(t, "../netd/doctor/testdata/iptables-felix-default.txt")), "\n") {
			if !strings.Contains(line, "ts-") {
				keep = append(keep, line)
			}
		}
		iptablesRestore(t, fb.NS, []byte(strings.Join(keep, "\n")))
		rep, code := doc(t, "firebat", "--only", "fwmark")
		wantFinding(t, rep, code, "fwmark/overlap", doctor.Fail, "calico writes mark bits 0x000f0000 that tailscale uses",
			"tailscale: writes 0x00ff0000", "kube-proxy: writes 0x00004000")
	})
}

// upTailnetLab brings up the tailnet lab from policy text and removes it
// (tailscaled, headscale, namespaces) at the end of the test.
func upTailnetLab(t *testing.T, data []byte, opts ...func(*lab.TailnetConfig)) (*lab.Lab, *lab.Tailnet) {
	t.Helper()
	tc := tailscaleTools(t)
	tc.UserRoutes = nil
	for _, o := range opts {
		o(&tc)
	}
	st := policyState(t, "policy.yaml", data)
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
				dumpStatusGoroutines(t, l)
			}
			if err := lab.DownTailnet(ctx, l); err != nil {
				t.Errorf("tailnet down: %v", err)
			}
		}
		if err := lab.Down(ctx, name, dir, log); err != nil {
			t.Errorf("lab down: %v", err)
		}
	})
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	l, tn, err := lab.UpTailscale(ctx, lab.Config{Name: name, State: st, Policy: data, Netd: netdBin, StateDir: dir,
		ConvergeTimeout: 90 * time.Second, Logger: log}, tc)
	if err != nil {
		t.Fatal(err)
	}
	return l, tn
}

// cgnatDrops is the packet counter of tailscaled's CGNAT drop rule in ns.
func cgnatDrops(t *testing.T, ns string) int {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), "ip", "netns", "exec", ns, "iptables", "-L", "ts-input", "-v", "-x", "-n").Output()
	if err != nil {
		t.Fatalf("iptables -L ts-input in %s: %v", ns, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) >= 9 && f[2] == "DROP" && f[5] == "!tailscale0" && f[7] == "100.64.0.0/10" {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	t.Fatalf("no CGNAT drop rule in ts-input of %s:\n%s", ns, out)
	return 0
}

// headscaleID is the headscale node id of the node with address a.
func headscaleID(t *testing.T, tn *lab.Tailnet, a netip.Addr) string {
	t.Helper()
	out, err := exec.CommandContext(t.Context(), tn.HeadscaleBin, "-c", filepath.Join(tn.Dir, "headscale.yaml"), "nodes", "list", "-o", "json").Output()
	if err != nil {
		t.Fatalf("headscale nodes list: %v", err)
	}
	var ns []struct {
		ID          uint64   `json:"id"`
		IPAddresses []string `json:"ip_addresses"`
	}
	if err := json.Unmarshal(out, &ns); err != nil {
		t.Fatal(err)
	}
	for _, n := range ns {
		if slices.Contains(n.IPAddresses, a.String()) {
			return fmt.Sprint(n.ID)
		}
	}
	t.Fatalf("no headscale node with %s", a)
	return ""
}
