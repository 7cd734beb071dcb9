package doctor

import (
	"bytes"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/routes/nl"
)

// TestHealthyNodePasses: every check of a healthy node passes, the report
// exits 0 and its JSON has the documented fields.
func TestHealthyNodePasses(t *testing.T) {
	f := newFakes(t)
	rep := f.run(t)
	for _, fd := range rep.Findings {
		if fd.Result != Pass {
			t.Errorf("%s: %s %s %v", fd.ID, fd.Result, fd.Summary, fd.Evidence)
		}
	}
	if rep.ExitCode() != 0 || rep.Result != Pass {
		t.Errorf("exit %d result %s", rep.ExitCode(), rep.Result)
	}
	var buf bytes.Buffer
	if err := rep.WriteJSON(&buf); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(buf.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"schemaVersion", "node", "policy", "digest", "time", "result", "counts", "findings"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("JSON report lacks %q", k)
		}
	}
	buf.Reset()
	if err := rep.WriteText(&buf, false); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), "PASS    sysctl/ip_forward") || !strings.Contains(buf.String(), "0 failed") {
		t.Errorf("text report:\n%s", buf.String())
	}
}

// TestChecksFindBreakage breaks one thing at a time on the healthy node
// and wants the finding with its evidence; the other checks stay quiet.
func TestChecksFindBreakage(t *testing.T) {
	peer := netip.MustParseAddr("100.64.0.2") // ultra
	cases := []struct {
		name     string
		breakIt  func(f *fakes)
		id       string
		result   Result
		evidence string
	}{
		{"ip_forward off", func(f *fakes) { f.sys["net/ipv4/ip_forward"] = "0" },
			"sysctl/ip_forward", Fail, "net.ipv4.ip_forward = 0"},
		{"strict rp_filter on the overlay", func(f *fakes) {
			f.sys["net/ipv4/conf/all/rp_filter"] = "0"
			f.sys["net/ipv4/conf/tailscale0/rp_filter"] = "1"
		}, "sysctl/rp_filter:tailscale0", Fail, "effective strict (1)"},
		{"strict rp_filter on the LAN through conf.all", func(f *fakes) { f.sys["net/ipv4/conf/all/rp_filter"] = "1" },
			"sysctl/rp_filter:eth0", Fail, "conf.all = 1: effective strict (1)"},
		{"strict pod interface whose pod routes into netd's table", func(f *fakes) {
			f.sys["net/ipv4/conf/all/rp_filter"] = "0" // the veth's own 1 is then the effective value
			f.k.SetRoute(nl.Route{Dst: f.self.PodCIDRs[0], Table: 244, Protocol: 244, NextHops: []nl.NextHop{{Gateway: peer, LinkIndex: f.k.AddLink("tailscale0"), Onlink: true}}})
		}, "sysctl/rp_filter:pods", Fail, "routes via tailscale0 (table 244), not its veth"},
		{"strict pod interfaces whose pods route back through their veths", func(f *fakes) { f.sys["net/ipv4/conf/all/rp_filter"] = "0" },
			"sysctl/rp_filter:pods", Pass, "net.ipv4.conf.cali1a2b3c4d5e6.rp_filter = 1, conf.all = 0: effective strict (1)"},
		{"overlay MTU", func(f *fakes) { f.k.SetMTU("tailscale0", 1500) },
			"mtu/device:tailscale0", Fail, "tailscale0: mtu 1500, up; policy spec.overlay.mtu 1280"},
		{"netd's rule gone", func(f *fakes) { _ = f.k.DelRule(t.Context(), nl.Rule{Priority: 5260, Table: 244}) },
			"routing/rule:5260", Fail, "want: priority 5260 lookup 244"},
		{"table 52 ahead of netd", func(f *fakes) { f.k.SetRule(nl.Rule{Priority: 5200, Table: 52}) },
			"routing/rule:5260", Fail, "5200: from all lookup 52"},
		{"foreign route in netd's table", func(f *fakes) {
			f.k.SetRoute(nl.Route{Dst: netip.MustParsePrefix("10.99.0.0/24"), Table: 244, Protocol: unix.RTPROT_STATIC, NextHops: []nl.NextHop{{LinkIndex: f.k.AddLink("tailscale0")}}})
		}, "routing/table:244", Warn, "10.99.0.0/24 dev tailscale0 table 244 proto static"},
		{"a pod block in a table looked up first", func(f *fakes) {
			f.k.SetRule(nl.Rule{Priority: 100, Table: 100})
			f.k.SetRoute(nl.Route{Dst: netip.MustParsePrefix("10.244.2.0/24"), Table: 100, NextHops: []nl.NextHop{{LinkIndex: f.k.AddLink("eth0")}}})
		}, "shadow/earlier-tables", Fail, "10.244.2.0/24 dev eth0 table 100"},
		{"a stale route in main", func(f *fakes) {
			f.k.SetRoute(nl.Route{Dst: netip.MustParsePrefix("10.244.2.0/24"), Table: unix.RT_TABLE_MAIN, Protocol: unix.RTPROT_STATIC, NextHops: []nl.NextHop{{Gateway: netip.MustParseAddr("192.168.0.12"), LinkIndex: f.k.AddLink("eth0")}}})
		}, "shadow/main", Warn, "10.244.2.0/24 via 192.168.0.12 dev eth0 table main proto static"},
		{"netd route over a local pod", func(f *fakes) {
			f.k.SetRoute(nl.Route{Dst: netip.MustParsePrefix("10.244.0.0/16"), Table: 244, Protocol: 244, NextHops: []nl.NextHop{{Gateway: peer, LinkIndex: f.k.AddLink("tailscale0"), Onlink: true}}})
		}, "shadow/local-pods", Fail, "10.244.0.0/16 via 100.64.0.2 dev tailscale0 onlink table 244 proto 244 covers local 10.244.1.1/32"},
		{"BGP on 0.0.0.0", func(f *fakes) {
			f.listeners = append(f.listeners, Listener{Addr: netip.MustParseAddrPort("0.0.0.0:179"), Inode: 7, Owner: "bird[9]"})
		}, "bgp-listen/port:179", Fail, "listening on 0.0.0.0:179 (socket 7, bird[9])"},
		{"nobody listens", func(f *fakes) { f.listeners = nil }, "bgp-listen/port:179", Fail, ""},
		{"accept-routes off", func(f *fakes) { f.prefs.RouteAll = false }, "tailscale/accept-routes", Fail, "prefs RouteAll = false"},
		{"SNAT on", func(f *fakes) { f.prefs.NoSNAT = false }, "tailscale/snat-subnet-routes", Fail, "prefs NoSNAT = false"},
		{"a block not advertised", func(f *fakes) { f.prefs.AdvertiseRoutes = nil }, "tailscale/advertised", Fail, "prefs AdvertiseRoutes = []"},
		{"another node's block advertised", func(f *fakes) {
			f.prefs.AdvertiseRoutes = append(f.prefs.AdvertiseRoutes, netip.MustParsePrefix("10.244.2.0/24"))
		}, "tailscale/advertised", Fail, "10.244.2.0/24"},
		{"not approved", func(f *fakes) { f.tsStatus.Self.AllowedIPs = nil }, "tailscale/approved", Fail, "self AllowedIPs = []"},
		{"peer's overlay address over the LAN", func(f *fakes) {
			f.k.SetRoute(nl.Route{Dst: netip.PrefixFrom(peer, 32), Table: 244, Protocol: unix.RTPROT_STATIC, NextHops: []nl.NextHop{{Gateway: netip.MustParseAddr("192.168.0.12"), LinkIndex: f.k.AddLink("eth0")}}})
		}, "cgnat/drop-rule", Fail, "leaves through eth0, not tailscale0"},
		{"Felix's default mark mask in the rules", func(f *fakes) {
			b := mustRead(t, "testdata/iptables-felix-default.txt")
			f.fw.Rules = ParseIptablesSave("iptables-nft", b)
		}, "fwmark/overlap", Fail, "calico writes mark bits 0x000f0000 that tailscale uses; e.g. -A cali-FORWARD"},
		{"firewall unreadable", func(f *fakes) { f.fw = nil }, "fwmark/overlap", Warn, "exit status 1"},
		{"Felix excludes nothing", func(f *fakes) { s := "kube-ipvs0"; f.felix.InterfaceExclude = &s },
			"felix/interfaceExclude", Fail, `spec.interfaceExclude = "kube-ipvs0"`},
		{"Felix MTU pattern unset", func(f *fakes) { f.felix.MTUIfacePattern = nil },
			"felix/mtuIfacePattern", Fail, "(unset: Felix's default)"},
		{"Felix mark mask unset", func(f *fakes) { f.felix.IptablesMarkMask = nil },
			"felix/iptablesMarkMask", Fail, "spec.iptablesMarkMask = 0xffff0000 (unset"},
		{"path MTU below the overlay's", func(f *fakes) {
			f.ping = func(dst netip.Addr, size int) PingResult {
				if dst == peer && size > 1200 {
					return PingResult{FragNeeded: true, MTU: 1200, From: netip.MustParseAddr("100.64.0.9")}
				}
				return PingResult{Reply: true}
			}
		}, "pmtu/peer:ultra", Fail, "1280-byte DF echo 100.64.0.1 -> 100.64.0.2 (ultra): frag-needed (mtu 1200) from 100.64.0.9"},
		{"peer silent", func(f *fakes) { f.ping = func(netip.Addr, int) PingResult { return PingResult{} } },
			"pmtu/peer:ultra", Warn, "84-byte echo: no answer"},
		{"peer clock off", func(f *fakes) { f.clock[peer] = TimestampResult{Reply: true, Offset: 90 * time.Second} },
			"clock/peer:ultra", Fail, "peer clock +1m30s against ours"},
		{"peer clock a little off", func(f *fakes) { f.clock[peer] = TimestampResult{Reply: true, Offset: 5 * time.Second} },
			"clock/peer:ultra", Warn, "peer clock +5s"},
		{"API server clock off", func(f *fakes) { f.serverOff = -2 * time.Minute }, "clock/apiserver", Fail, "offset -1m59.5"},
		{"policy reload rejected", func(f *fakes) { f.netd.Policy.LastError = "policy.yaml:3:1: bad" },
			"netd/policy", Fail, "last error: policy.yaml:3:1: bad"},
		{"node peer down", func(f *fakes) { f.netd.BGP.Peers[3].State = "active" }, "netd/bgp", Fail, "peer ultra 100.64.0.2: active"},
		{"external peer down", func(f *fakes) { f.netd.BGP.Peers[1].State = "active" }, "netd/bgp", Warn, "peer home-router 192.168.0.1: active"},
		{"BFD down to an established peer", func(f *fakes) { f.bfd[peer] = false }, "netd/bfd", Warn, "bfd 100.64.0.2: down (bgp established)"},
		{"drift", func(f *fakes) { f.netd.Drift.RuleMissing = true }, "netd/routes", Fail, "netd's rule is missing"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := newFakes(t)
			c.breakIt(f)
			rep := f.run(t)
			var got *Finding
			for i, fd := range rep.Findings {
				if fd.ID == c.id {
					got = &rep.Findings[i]
				}
			}
			if got == nil {
				t.Fatalf("no finding %s", c.id)
			}
			ev := strings.Join(got.Evidence, "\n")
			if got.Result != c.result || !strings.Contains(ev, c.evidence) {
				t.Errorf("%s: %s %q, evidence:\n%s\nwant %s with %q", c.id, got.Result, got.Summary, ev, c.result, c.evidence)
			}
			if got.Result != Pass && got.Fix == "" && got.Result != Warn {
				t.Errorf("%s: a failure without a fix", c.id)
			}
			if want := map[Result]int{Fail: 1, Warn: 0}[c.result]; rep.ExitCode() != want {
				t.Errorf("exit %d, want %d", rep.ExitCode(), want)
			}
		})
	}
}

func TestOptionalInputsSkip(t *testing.T) {
	f := newFakes(t)
	in := &Input{State: f.st, Node: f.self, Host: Host{Kernel: f.k, Sysctl: fakeSysctl(f.sys), Firewall: fakeFirewall{f.fw},
		Sockets: fakeSockets(f.listeners), Prober: fakeProber{f}}}
	rep := Run(t.Context(), in, Checks())
	for _, id := range []string{"tailscale/prefs", "felix/config", "netd/status"} {
		found := false
		for _, fd := range rep.Findings {
			if fd.ID == id {
				found = fd.Result == Skip
			}
		}
		if !found {
			t.Errorf("%s not skipped", id)
		}
	}
	if rep.ExitCode() != 0 || rep.Result != Pass {
		t.Errorf("skips made the run %s / exit %d", rep.Result, rep.ExitCode())
	}
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
