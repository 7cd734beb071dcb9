package acldoc

import (
	"net/netip"
	"testing"
)

// TestGenerateFlows: the BFD grant follows GenerateInput.BFD, the VXLAN
// grant GenerateInput.VXLAN, and each comes with a test that holds.
func TestGenerateFlows(t *testing.T) {
	node := Endpoint{Tags: []string{"tag:k8s-node"}, Addr: netip.MustParseAddr("100.64.0.2")}
	peer := Endpoint{Tags: []string{"tag:k8s-node"}, Addr: netip.MustParseAddr("100.64.0.3")}
	for _, tc := range []struct {
		bfd, vxlan bool
	}{{false, false}, {true, false}, {false, true}, {true, true}} {
		in := fourNodes()
		in.BFD, in.VXLAN = tc.bfd, tc.vxlan
		p := Generate(Policy{}, in)
		ev := NewEvaluator(&p)
		for _, c := range []struct {
			port int
			want bool
		}{{PortBFD, tc.bfd}, {portVXLAN, tc.vxlan}, {4784, false}} {
			ok, by, err := ev.Allows(node, peer, "udp", c.port)
			if err != nil {
				t.Fatal(err)
			}
			if ok != c.want {
				t.Errorf("bfd=%v vxlan=%v: udp/%d allowed=%v (by %s), want %v", tc.bfd, tc.vxlan, c.port, ok, by, c.want)
			}
		}
		if ok, _, _ := ev.Allows(node, peer, "tcp", PortBFD); ok {
			t.Errorf("bfd=%v: tcp/3784 allowed; the BFD grant is udp only", tc.bfd)
		}
		for _, r := range RunTests(&p) {
			if !r.OK {
				t.Errorf("bfd=%v vxlan=%v: %s %s -> %s: %s", tc.bfd, tc.vxlan, r.Path, r.Src, r.Dst, r.Reason)
			}
		}
	}
}

func TestEvaluatorAllows(t *testing.T) {
	p := Policy{
		Hosts: map[string]string{"cp": "100.64.0.4"},
		Grants: []Grant{
			{Src: []string{"tag:a"}, Dst: []string{"tag:b"}, IP: []string{"udp:3784"}},
			{Src: []string{"100.64.0.1/32"}, Dst: []string{"cp"}, IP: []string{"tcp:179"}},
		},
		ACLs: []ACL{{Action: "accept", Src: []string{"tag:b"}, Proto: "udp", Dst: []string{"tag:a:4789"}}},
	}
	a := Endpoint{Tags: []string{"tag:a"}, Addr: netip.MustParseAddr("100.64.0.1")}
	b := Endpoint{Tags: []string{"tag:b"}, Addr: netip.MustParseAddr("100.64.0.4")}
	untagged := Endpoint{Addr: netip.MustParseAddr("100.64.0.9")}
	ev := NewEvaluator(&p)
	for _, c := range []struct {
		src, dst Endpoint
		proto    string
		port     int
		want     string
	}{
		{a, b, "udp", 3784, "grants[0]"},
		{b, a, "udp", 3784, ""}, // grants are one way
		{a, b, "tcp", 179, "grants[1]"},
		{b, a, "udp", 4789, "acls[0]"},
		{b, a, "tcp", 4789, ""},
		{untagged, b, "udp", 3784, ""},
	} {
		ok, by, err := ev.Allows(c.src, c.dst, c.proto, c.port)
		if err != nil {
			t.Fatal(err)
		}
		if ok != (c.want != "") || by != c.want {
			t.Errorf("%v -> %v %s/%d: allowed=%v by %q, want %q", c.src, c.dst, c.proto, c.port, ok, by, c.want)
		}
	}
	if _, _, err := ev.Allows(a, b, "nosuch", 1); err == nil {
		t.Error("unknown protocol accepted")
	}
	for _, c := range []struct {
		s    string
		e    Endpoint
		want bool
	}{
		{"tag:a", a, true}, {"tag:a", b, false}, {"cp", b, true}, {"100.64.0.0/10", untagged, true},
		{"*", untagged, true}, {"alice@example.com", a, false},
	} {
		if got := ev.Names(c.s, c.e); got != c.want {
			t.Errorf("Names(%q, %v) = %v, want %v", c.s, c.e, got, c.want)
		}
	}
}
