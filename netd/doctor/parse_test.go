package doctor

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
)

func findRule(t *testing.T, rs []FWRule, chain, text string) FWRule {
	t.Helper()
	for _, r := range rs {
		if r.Chain == chain && (text == "" || r.Text == text) {
			return r
		}
	}
	t.Fatalf("no rule %q in chain %s", text, chain)
	return FWRule{}
}

func TestParseIptablesSave(t *testing.T) {
	b, err := os.ReadFile("testdata/iptables-felix-default.txt")
	if err != nil {
		t.Fatal(err)
	}
	rs := ParseIptablesSave("iptables-nft", b)
	drop := findRule(t, rs, "ts-input", "-A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP")
	if drop.Table != "filter" || drop.Src != cgnatRange || drop.InIface != "tailscale0" || !drop.InNeg || drop.Verdict != "DROP" || drop.Owner() != "tailscale" {
		t.Errorf("CGNAT drop rule parsed as %+v", drop)
	}
	fwd := findRule(t, rs, "ts-forward", "-A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP")
	if fwd.OutIface != "tailscale0" || fwd.OutNeg {
		t.Errorf("ts-forward drop parsed as %+v", fwd)
	}
	for _, c := range []struct {
		chain, text  string
		write, read  uint32
		owner, verdi string
	}{
		{"KUBE-MARK-MASQ", "", 0x4000, 0, "kube-proxy", "MARK"},
		{"KUBE-POSTROUTING", "-A KUBE-POSTROUTING -j MARK --set-xmark 0x4000/0x0", 0x4000, 0, "kube-proxy", "MARK"},
		{"KUBE-POSTROUTING", "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN", 0, 0x4000, "kube-proxy", "RETURN"},
		{"ts-forward", "-A ts-forward -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000", 0xff0000, 0, "tailscale", "MARK"},
		{"cali-FORWARD", `-A cali-FORWARD -m comment --comment "cali:vjrMJCRpqwy5oRoX" -j MARK --set-xmark 0x0/0xe0000`, 0xe0000, 0, "calico", "MARK"},
		{"cali-fw-cali1a2b3c4d5e6", `-A cali-fw-cali1a2b3c4d5e6 -m comment --comment "cali:Yk1x0sJz8tDnRo0l" -m mark --mark 0x0/0x20000 -j cali-pi-_tW2E4cSjdvlXxyRaJD6`, 0, 0x20000, "calico", "JUMP cali-pi-_tW2E4cSjdvlXxyRaJD6"},
	} {
		r := findRule(t, rs, c.chain, c.text)
		if r.MarkWrite != c.write || r.MarkRead != c.read || r.Owner() != c.owner || r.Verdict != c.verdi {
			t.Errorf("%s: write 0x%x read 0x%x owner %s verdict %q; want 0x%x 0x%x %s %q", r.Text, r.MarkWrite, r.MarkRead, r.Owner(), r.Verdict, c.write, c.read, c.owner, c.verdi)
		}
	}
}

func TestParseNftJSON(t *testing.T) {
	b, err := os.ReadFile("testdata/nft.json")
	if err != nil {
		t.Fatal(err)
	}
	rs, err := ParseNftJSON(b)
	if err != nil {
		t.Fatal(err)
	}
	if len(rs) != 7 {
		t.Fatalf("%d rules, want 7: %+v", len(rs), rs)
	}
	var drop *FWRule
	for i := range rs {
		if rs[i].Chain == "ts-input" {
			drop = &rs[i]
		}
	}
	if drop == nil || drop.Table != "ip filter" || drop.Src != cgnatRange || drop.InIface != "tailscale0" || !drop.InNeg || drop.Verdict != "DROP" {
		t.Fatalf("CGNAT drop rule: %+v", drop)
	}
	want := map[string]struct{ write, read uint32 }{
		"nft ip kube-proxy mark-for-masquerade: meta mark set (meta mark | 0x4000)":                               {0x4000, 0},
		"nft ip kube-proxy masquerading: (meta mark & 0x4000) == 0x0 return":                                      {0, 0x4000},
		"nft ip kube-proxy masquerading: meta mark set (meta mark ^ 0x4000)":                                      {0x4000, 0},
		"nft ip filter ts-forward: meta iifname == tailscale0 meta mark set ((meta mark & 0xff04ffff) | 0x40000)": {0xff0000, 0},
		"nft ip filter ts-forward: (meta mark & 0xff0000) == 0x40000 accept":                                      {0, 0xff0000},
		"nft ip calico fw: meta mark set (meta mark & 0xfffeffff)":                                                {0x10000, 0},
	}
	for _, r := range rs {
		w, ok := want[r.Text]
		if r.Chain == "ts-input" {
			continue
		}
		if !ok {
			t.Errorf("unexpected rule text %q", r.Text)
			continue
		}
		if r.MarkWrite != w.write || r.MarkRead != w.read {
			t.Errorf("%s: write 0x%x read 0x%x, want 0x%x 0x%x", r.Text, r.MarkWrite, r.MarkRead, w.write, w.read)
		}
	}
}

func TestParseProcNetTCP(t *testing.T) {
	tcp := `  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 01004064:00B3 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 897088 2 00000000bdba4135 100 0 0 10 0
   1: 0100007F:23DC 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 897083 2 000000003f1bc0cf 100 0 0 10 0
   2: 01004064:00B3 02004064:9151 01 00000000:00000000 02:0000051A 00000000     0        0 895672 2 000000001ad197a5 20 4 30 34 -1
`
	ls, err := ParseProcNetTCP([]byte(tcp))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Addr != netip.MustParseAddrPort("100.64.0.1:179") || ls[0].Inode != 897088 || ls[1].Addr != netip.MustParseAddrPort("127.0.0.1:9180") {
		t.Errorf("tcp: %+v", ls)
	}
	tcp6 := `  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 00000000000000000000000000000000:00B3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1234 1 0000000000000000 100 0 0 10 0
   1: 0000000000000000FFFF00000100A8C0:00B3 00000000000000000000000000000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1235 1 0000000000000000 100 0 0 10 0
`
	ls, err = ParseProcNetTCP([]byte(tcp6))
	if err != nil {
		t.Fatal(err)
	}
	if len(ls) != 2 || ls[0].Addr != netip.MustParseAddrPort("[::]:179") || ls[1].Addr != netip.MustParseAddrPort("192.168.0.1:179") {
		t.Errorf("tcp6: %+v", ls)
	}
}

func TestParseBFDMetrics(t *testing.T) {
	m := "# HELP netd_bfd_session_up 1 if ...\n# TYPE netd_bfd_session_up gauge\n" +
		"netd_bfd_session_up{peer=\"100.64.0.2\"} 1\nnetd_bfd_session_up{peer=\"100.64.0.3\"} 0\nnetd_bgp_x 1\n"
	up, on, err := ParseBFDMetrics([]byte(m))
	if err != nil || !on || len(up) != 2 || !up[netip.MustParseAddr("100.64.0.2")] || up[netip.MustParseAddr("100.64.0.3")] {
		t.Errorf("got %v %v %v", up, on, err)
	}
	if _, on, _ := ParseBFDMetrics([]byte("netd_bgp_x 1\n")); on {
		t.Error("BFD reported on without BFD metrics")
	}
}

// TestTimestampFromReply: the NTP-style offset across midnight, and the
// round trip without the peer's processing time.
func TestTimestampFromReply(t *testing.T) {
	t1 := time.Date(2026, 1, 1, 23, 59, 59, 900_000_000, time.UTC)
	t4 := t1.Add(20 * time.Millisecond)
	// The peer is 5 s ahead: it received at 00:00:04.910 and sent at
	// 00:00:04.912 of the next day.
	r := TimestampFromReply(t1, t4, 4910, 4912)
	if d := r.Offset - 5*time.Second; d.Abs() > 2*time.Millisecond {
		t.Errorf("offset %v, want 5s", r.Offset)
	}
	if r.RTT != 18*time.Millisecond {
		t.Errorf("rtt %v, want 18ms", r.RTT)
	}
	// 3 s behind, no wrap.
	t1 = time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	r = TimestampFromReply(t1, t1.Add(2*time.Millisecond), 12*3600*1000-3000+1, 12*3600*1000-3000+1)
	if d := r.Offset + 3*time.Second; d.Abs() > time.Millisecond {
		t.Errorf("offset %v, want -3s", r.Offset)
	}
}

func TestFelixExcludes(t *testing.T) {
	for _, c := range []struct {
		list string
		want bool
	}{
		{"kube-ipvs0,tailscale0", true},
		{"kube-ipvs0", false},
		{"/^tailscale/,veth1", true},
		{"/^kube/", false},
		{" tailscale0 ", true},
		{"tailscale", false},
	} {
		if got, err := felixExcludes(c.list, "tailscale0"); err != nil || got != c.want {
			t.Errorf("%q: %v %v, want %v", c.list, got, err, c.want)
		}
	}
	if _, err := felixExcludes("/[/", "x"); err == nil {
		t.Error("a bad regexp was accepted")
	}
}

// TestClassifyEcho: an echo reply, and a frag-needed quoting our request
// with the next-hop MTU; messages about other probes are not ours.
func TestClassifyEcho(t *testing.T) {
	dst, hop := netip.MustParseAddr("100.64.0.2"), netip.MustParseAddr("100.64.0.9")
	req, _ := (&icmp.Message{Type: ipv4.ICMPTypeEcho, Body: &icmp.Echo{ID: 7, Seq: 9, Data: make([]byte, 1252)}}).Marshal(nil)
	reply, _ := (&icmp.Message{Type: ipv4.ICMPTypeEchoReply, Body: &icmp.Echo{ID: 7, Seq: 9}}).Marshal(nil)
	if r, ok := classifyEcho(reply, dst, dst, 7, 9); !ok || !r.Reply {
		t.Errorf("reply: %+v %v", r, ok)
	}
	if _, ok := classifyEcho(reply, dst, dst, 8, 9); ok {
		t.Error("a reply to another probe was taken")
	}
	hdr, _ := (&ipv4.Header{Version: 4, Len: 20, TotalLen: 1280, TTL: 64, Protocol: 1, Src: net.IPv4(100, 64, 0, 1), Dst: dst.AsSlice()}).Marshal()
	fn, _ := (&icmp.Message{Type: ipv4.ICMPTypeDestinationUnreachable, Code: 4, Body: &icmp.DstUnreach{Data: append(hdr, req[:8]...)}}).Marshal(nil)
	binary.BigEndian.PutUint16(fn[6:8], 1200) // the next-hop MTU
	if r, ok := classifyEcho(fn, hop, dst, 7, 9); !ok || !r.FragNeeded || r.MTU != 1200 || r.From != hop {
		t.Errorf("frag-needed: %+v %v", r, ok)
	}
	if _, ok := classifyEcho(fn, hop, netip.MustParseAddr("100.64.0.3"), 7, 9); ok {
		t.Error("a frag-needed for another destination was taken")
	}
}
