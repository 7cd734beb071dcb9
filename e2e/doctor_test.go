package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/netd/doctor"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/lab"
)

// TestDoctor runs `netd doctor` on a lab node, as an operator runs it on a
// node: a clean lab passes every check, then each subtest injects one
// misconfiguration into a node namespace, sees it reported with its
// evidence, and undoes it. The emulated overlay has no tailscaled, Felix or
// kube-proxy: their firewall rules are injected in the text they write
// (netd/doctor/testdata), and the tailscaled checks run in
// TestDoctorTailnet.
func TestDoctor(t *testing.T) {
	t.Parallel() // see doc.go
	needRoot(t)
	needFirewallTools(t)
	data := withoutExternalPeers(t, examplePolicy(t))
	l := upLabWith(t, data)
	ctx := t.Context()
	fb, _ := l.Node("firebat")
	ul, _ := l.Node("ultra")
	ns := fb.NS

	t.Run("clean lab passes", func(t *testing.T) {
		// BFD comes up on its own schedule after the routes converge:
		// poll until every node's report is clean.
		var bad []string
		testutil.Poll(t, 30*time.Second, "a clean report on every node", func() (bool, error) {
			bad = nil
			for _, n := range l.Nodes {
				rep, code := runDoctor(t, l, n.Name)
				for _, f := range rep.Findings {
					if f.Result != doctor.Pass && (f.Result != doctor.Skip || (f.ID != "tailscale/prefs" && f.ID != "felix/config")) {
						bad = append(bad, fmt.Sprintf("%s: %s %s: %s %v", n.Name, f.ID, f.Result, f.Summary, f.Evidence))
					}
				}
				if code != 0 || rep.Counts[doctor.Pass] < 20 {
					bad = append(bad, fmt.Sprintf("%s: exit %d, counts %v", n.Name, code, rep.Counts))
				}
			}
			if len(bad) > 0 {
				t.Logf("not clean yet: %v", bad)
			}
			return len(bad) == 0, nil
		})
	})

	t.Run("ip_forward off", func(t *testing.T) {
		nsRun(t, ns, "sysctl -qw net.ipv4.ip_forward=0", "sysctl -qw net.ipv4.ip_forward=1")
		rep, code := runDoctor(t, l, "firebat", "--only", "sysctl")
		wantFinding(t, rep, code, "sysctl/ip_forward", doctor.Fail, "net.ipv4.ip_forward = 0")
	})

	t.Run("strict rp_filter", func(t *testing.T) {
		nsRun(t, ns, "sysctl -qw net.ipv4.conf.tailscale0.rp_filter=1", "sysctl -qw net.ipv4.conf.tailscale0.rp_filter=0")
		rep, code := runDoctor(t, l, "firebat", "--only", "sysctl")
		wantFinding(t, rep, code, "sysctl/rp_filter:tailscale0", doctor.Fail, "net.ipv4.conf.tailscale0.rp_filter = 1, conf.all = 0: effective strict (1)")
		wantFinding(t, rep, code, "sysctl/rp_filter:eth0", doctor.Pass)
		// conf.all = 1 makes every device strict; the pods' addresses
		// route back through their veths, so the pods pass.
		nsRun(t, ns, "sysctl -qw net.ipv4.conf.all.rp_filter=1", "sysctl -qw net.ipv4.conf.all.rp_filter=0")
		rep, code = runDoctor(t, l, "firebat", "--only", "sysctl")
		wantFinding(t, rep, code, "sysctl/rp_filter:eth0", doctor.Fail, "conf.all = 1: effective strict (1)")
		wantFinding(t, rep, code, "sysctl/rp_filter:pods", doctor.Pass, "effective strict (1)")
	})

	t.Run("overlay device MTU", func(t *testing.T) {
		nsRun(t, ns, "ip link set dev tailscale0 mtu 1500", "ip link set dev tailscale0 mtu 1280")
		rep, code := runDoctor(t, l, "firebat", "--only", "mtu")
		wantFinding(t, rep, code, "mtu/device:tailscale0", doctor.Fail, "tailscale0: mtu 1500, up; policy spec.overlay.mtu 1280")
	})

	t.Run("path MTU below the overlay's", func(t *testing.T) {
		// ultra's end of the overlay takes 1200: firebat's 1280-byte
		// packets to it are dropped on arrival.
		nsRun(t, ul.NS, "ip link set dev tailscale0 mtu 1200", "ip link set dev tailscale0 mtu 1280")
		rep, code := runDoctor(t, l, "firebat", "--only", "pmtu")
		wantFinding(t, rep, code, "pmtu/peer:ultra", doctor.Fail, "1280-byte DF echo 100.64.0.1 -> 100.64.0.2 (ultra): no answer", "84-byte echo: reply")
		wantFinding(t, rep, code, "pmtu/peer:old", doctor.Pass, "1281-byte DF echo: refused by the local kernel")
	})

	t.Run("tailscaled's table ahead of netd's", func(t *testing.T) {
		nsRun(t, ns, "ip rule add priority 5200 lookup 52", "ip rule del priority 5200 lookup 52")
		rep, code := runDoctor(t, l, "firebat", "--only", "routing")
		wantFinding(t, rep, code, "routing/rule:5260", doctor.Fail, "rule: ip rule 5200: from all to all table 52")
	})

	t.Run("foreign route in netd's table", func(t *testing.T) {
		nsRun(t, ns, "ip route add 10.99.0.0/24 dev tailscale0 table 244", "ip route del 10.99.0.0/24 table 244")
		rep, code := runDoctor(t, l, "firebat", "--only", "routing")
		wantFinding(t, rep, code, "routing/table:244", doctor.Warn, "10.99.0.0/24 dev tailscale0 table 244 proto boot")
	})

	block := ul.PodCIDRs[0].String()
	t.Run("pod block shadowed by an earlier table", func(t *testing.T) {
		nsRun(t, ns, "ip route add "+block+" dev eth0 table 100", "ip route del "+block+" table 100")
		nsRun(t, ns, "ip rule add priority 100 lookup 100", "ip rule del priority 100 lookup 100")
		rep, code := runDoctor(t, l, "firebat", "--only", "shadow")
		wantFinding(t, rep, code, "shadow/earlier-tables", doctor.Fail, block+" dev eth0 table 100 proto boot", "(overlaps "+block+" of ultra)", "ip rule 100: from all to all table 100: 1 routes over pod blocks")
	})

	t.Run("stale pod route in main", func(t *testing.T) {
		nsRun(t, ns, "ip route add "+block+" via "+ul.LANAddr.String()+" dev eth0", "ip route del "+block)
		rep, code := runDoctor(t, l, "firebat", "--only", "shadow")
		wantFinding(t, rep, code, "shadow/main", doctor.Warn, block+" via "+ul.LANAddr.String()+" dev eth0 table main proto boot")
	})

	t.Run("BGP listener on the LAN address", func(t *testing.T) {
		var ln net.Listener
		if err := lab.InNS(ns, func() error {
			var err error
			ln, err = net.Listen("tcp4", netip.AddrPortFrom(fb.LANAddr, 179).String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		rep, code := runDoctor(t, l, "firebat", "--only", "bgp-listen")
		wantFinding(t, rep, code, "bgp-listen/port:179", doctor.Fail, "listening on 192.168.0.11:179", fmt.Sprintf("[%d])", os.Getpid()), "listening on 100.64.0.1:179")
	})

	t.Run("fwmark overlap", func(t *testing.T) {
		// Tailscale's, kube-proxy's and Felix's rules with Felix's
		// default mark mask 0xffff0000.
		iptablesRestore(t, ns, mustReadFile(t, "../netd/doctor/testdata/iptables-felix-default.txt"))
		rep, code := runDoctor(t, l, "firebat", "--only", "fwmark")
		wantFinding(t, rep, code, "fwmark/overlap", doctor.Fail, "calico writes mark bits 0x000f0000 that tailscale uses",
			"-A cali-FORWARD -m comment --comment \"cali:vjrMJCRpqwy5oRoX\" -j MARK --set-xmark 0x0/0xe0000", "kube-proxy: writes 0x00004000")
		// The same with the mask the policy compiles: no overlap.
		nsRun(t, ns, "nft flush ruleset", "")
		iptablesRestore(t, ns, mustReadFile(t, "../netd/doctor/testdata/iptables-felix-policy.txt"))
		rep, code = runDoctor(t, l, "firebat", "--only", "fwmark")
		wantFinding(t, rep, code, "fwmark/overlap", doctor.Pass, "calico: writes 0x00000f00", "tailscale: writes 0x00ff0000")
	})

	t.Run("peer clock off", func(t *testing.T) {
		skewedClock(t, ul.NS, 90*time.Second)
		rep, code := runDoctor(t, l, "firebat", "--only", "clock")
		// The responder runs 90 s ahead; the estimate is the midpoint of
		// the round trip at millisecond resolution, so it may read 1m29.99x.
		wantFinding(t, rep, code, "clock/peer:ultra", doctor.Fail, "ICMP timestamp 100.64.0.1 -> 100.64.0.2: peer clock +1m")
		wantSkew(t, rep, "clock/peer:ultra", 90*time.Second, 50*time.Millisecond)
		wantFinding(t, rep, code, "clock/peer:old", doctor.Pass)
	})

	t.Run("felix", func(t *testing.T) {
		s := kubetest.Start(t)
		c, err := kube.NewClient(s.Config)
		if err != nil {
			t.Fatal(err)
		}
		kc := apiThroughLab(t, l, s)("firebat")
		felix := c.Dynamic.Resource(calico.FelixConfigurations)
		st := policyState(t, "policy.yaml", data)
		fc := &unstructured.Unstructured{Object: map[string]any{
			"apiVersion": calico.V1.String(), "kind": "FelixConfiguration", "metadata": map[string]any{"name": "default"},
			"spec": map[string]any{"interfaceExclude": st.Calico.Felix.InterfaceExclude, "mtuIfacePattern": st.Calico.Felix.MTUIfacePattern,
				"iptablesMarkMask": int64(st.Calico.Felix.IptablesMarkMask)},
		}}
		if _, err := felix.Create(ctx, fc, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		rep, code := runDoctor(t, l, "firebat", "--only", "felix,clock", "--kubeconfig", kc)
		for _, id := range []string{"felix/interfaceExclude", "felix/mtuIfacePattern", "felix/iptablesMarkMask", "clock/apiserver"} {
			wantFinding(t, rep, code, id, doctor.Pass)
		}
		// What Felix runs on when nobody set them: tailscale0 not
		// excluded, MTU from the LAN device, the default mark mask.
		got, err := felix.Get(ctx, "default", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		got.Object["spec"] = map[string]any{"interfaceExclude": "kube-ipvs0"}
		if _, err := felix.Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		rep, code = runDoctor(t, l, "firebat", "--only", "felix", "--kubeconfig", kc)
		wantFinding(t, rep, code, "felix/interfaceExclude", doctor.Fail, `FelixConfiguration default (crd.projectcalico.org/v1) spec.interfaceExclude = "kube-ipvs0"`)
		wantFinding(t, rep, code, "felix/mtuIfacePattern", doctor.Fail, "(unset: Felix's default)")
		wantFinding(t, rep, code, "felix/iptablesMarkMask", doctor.Fail, "spec.iptablesMarkMask = 0xffff0000 (unset: Felix's default)")
	})

	// Last: it stops a netd.
	t.Run("peer down", func(t *testing.T) {
		if err := l.StopNetd(ctx, "old", 10*time.Second); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if err := l.StartNetd(context.Background(), "old"); err != nil {
				t.Error(err)
				return
			}
			cctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if err := l.WaitConverged(cctx, names(l)); err != nil {
				t.Error(err)
			}
		})
		testutil.Poll(t, 30*time.Second, "firebat's session to old down", func() (bool, error) {
			st, err := l.PeerStates(ctx, "firebat")
			return err == nil && st["old"] != "established", err
		})
		rep, code := runDoctor(t, l, "firebat", "--only", "netd")
		wantFinding(t, rep, code, "netd/bgp", doctor.Fail, "peer old 100.64.0.3: ")
		// BFD to old is down with its BGP session, which says it already.
		wantFinding(t, rep, code, "netd/bfd", doctor.Pass)
	})
}

func mustReadFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
