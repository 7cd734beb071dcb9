package policy

import (
	"errors"
	"strings"
	"testing"

	"github.com/ducksnest/netd/policy/acldoc"
)

// TestFlowsFollowTopology: the flows a hand-written tailnet policy must
// allow are those of the BGP sessions: with route reflection, clients and
// reflectors only, not client to client. A policy that allows them passes;
// BFD turned off needs no UDP 3784.
func TestFlowsFollowTopology(t *testing.T) {
	f := loadMinimal(t) // nodes cp, a, b
	f.Spec.BGP.Topology = "route-reflector"
	f.Spec.BGP.RouteReflectors = []string{"cp"}
	f.Spec.Generate.Disabled = true
	f.Spec.Tailnet = acldoc.Policy{
		TagOwners: map[string][]string{"tag:k8s-node": {"autogroup:admin"}},
		Grants: []acldoc.Grant{
			{Src: []string{"100.64.0.4"}, Dst: []string{"100.64.0.0/10"}, IP: []string{"tcp:179"}},
			{Src: []string{"100.64.0.0/10"}, Dst: []string{"100.64.0.4"}, IP: []string{"tcp:179"}},
		},
	}
	for i := range f.Spec.Nodes {
		f.Spec.Nodes[i].Tailscale.Tags = nil
	}
	_, err := Compile(f)
	var el ErrorList
	if !errors.As(err, &el) || len(el) != 1 {
		t.Fatalf("want one error (BFD), got %v", err)
	}
	msg := el[0].Msg
	for _, want := range []string{"BFD is on", "udp/3784", "cp -> a", "a -> cp", "cp -> b", "b -> cp"} {
		if !strings.Contains(msg, want) {
			t.Errorf("error lacks %q: %s", want, msg)
		}
	}
	if strings.Contains(msg, "a -> b") || strings.Contains(msg, "b -> a") {
		t.Errorf("route-reflector clients do not peer, but their flow is required: %s", msg)
	}
	if el[0].Path != "spec.bgp.bfd.enabled" || !strings.Contains(el[0].Hint, "100.64.0.4, 100.64.0.1, 100.64.0.2") && !strings.Contains(el[0].Hint, "ip: [\"udp:3784\"]") {
		t.Errorf("path %s hint %q", el[0].Path, el[0].Hint)
	}
	off := false
	f.Spec.BGP.BFD.Enabled = &off
	if _, err := Compile(f); err != nil {
		t.Errorf("BFD off, BGP allowed: %v", err)
	}
	// BGP needs one way per session: the reflector reaching its clients
	// is enough; reaching only one of them is not.
	f.Spec.Tailnet.Grants = f.Spec.Tailnet.Grants[:1]
	if _, err := Compile(f); err != nil {
		t.Errorf("BGP one way (reflector -> clients): %v", err)
	}
	f.Spec.Tailnet.Grants[0].Dst = []string{"100.64.0.1"}
	_, err = Compile(f)
	if !errors.As(err, &el) || len(el) != 1 || !strings.Contains(el[0].Msg, "BGP is on") || !strings.Contains(el[0].Msg, "(cp <-> b)") {
		t.Fatalf("cp and b cannot reach each other: %v", err)
	}
}
