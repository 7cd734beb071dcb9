package acldoc

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

// fourNodes is the homelab: an EC2 control plane with its own tag and
// three on-prem workers.
func fourNodes() GenerateInput {
	return GenerateInput{
		NodeTag: "tag:k8s-node",
		Nodes: []GenNode{
			{Name: "ec2", Hostname: "ec2-cp", Role: "control-plane", Tags: []string{"tag:k8s-node", "tag:aws"}, OverlayAddr: netip.MustParseAddr("100.64.0.1")},
			{Name: "firebat", Hostname: "firebat", Role: "worker", Tags: []string{"tag:k8s-node"}, OverlayAddr: netip.MustParseAddr("100.64.0.2")},
			{Name: "ultra", Hostname: "ultra", Role: "worker", Tags: []string{"tag:k8s-node"}, OverlayAddr: netip.MustParseAddr("100.64.0.3")},
			{Name: "old", Hostname: "old", Role: "worker", Tags: []string{"tag:k8s-node"}, OverlayAddr: netip.MustParseAddr("100.64.0.4")},
		},
		PodCIDR:     netip.MustParsePrefix("10.244.0.0/16"),
		ServiceCIDR: netip.MustParsePrefix("10.96.0.0/12"),
		OverlayCIDR: netip.MustParsePrefix("100.64.0.0/10"),
		BGPPort:     179,
	}
}

func TestGeneratePreservesBase(t *testing.T) {
	base := validPolicy()
	out := Generate(base, fourNodes())
	if d := cmp.Diff(validPolicy(), base); d != "" {
		t.Fatalf("Generate mutated base:\n%s", d)
	}
	if d := cmp.Diff(base.Grants, out.Grants[:len(base.Grants)]); d != "" {
		t.Errorf("user grants changed:\n%s", d)
	}
	if d := cmp.Diff(base.Tests, out.Tests[:len(base.Tests)]); d != "" {
		t.Errorf("user tests changed:\n%s", d)
	}
	if d := cmp.Diff(base.ACLs, out.ACLs); d != "" {
		t.Errorf("acls changed:\n%s", d)
	}
	if d := cmp.Diff(base.SSH, out.SSH); d != "" {
		t.Errorf("ssh changed:\n%s", d)
	}
	for k, v := range base.Groups {
		if !slices.Equal(out.Groups[k], v) {
			t.Errorf("group %s changed", k)
		}
	}
	for k, v := range base.TagOwners {
		if !slices.Equal(out.TagOwners[k], v) {
			t.Errorf("tagOwners %s changed", k)
		}
	}
	for k, v := range base.Hosts {
		if out.Hosts[k] != v {
			t.Errorf("host %s changed", k)
		}
	}
	if len(out.Grants) <= len(base.Grants) || len(out.Tests) <= len(base.Tests) {
		t.Fatalf("nothing generated: %d grants, %d tests", len(out.Grants), len(out.Tests))
	}
	for i := range out.Grants {
		_, gen := out.Generated["grants"+idx(i)]
		if gen != (i >= len(base.Grants)) {
			t.Errorf("grants[%d]: generated=%v", i, gen)
		}
	}
	for i := range out.Tests {
		_, gen := out.Generated["tests"+idx(i)]
		if gen != (i >= len(base.Tests)) {
			t.Errorf("tests[%d]: generated=%v", i, gen)
		}
	}
	// Mutating the output must not reach base.
	out.Grants[0].Src[0] = "changed"
	out.Groups["group:admins"][0] = "changed"
	out.AutoApprovers.Routes["10.244.0.0/16"][0] = "changed"
	if d := cmp.Diff(validPolicy(), base); d != "" {
		t.Fatalf("output aliases base:\n%s", d)
	}
}

func TestGenerateIdempotent(t *testing.T) {
	for name, base := range map[string]Policy{"valid": validPolicy(), "empty": {}, "eval": evalPolicy()} {
		t.Run(name, func(t *testing.T) {
			once := Generate(base, fourNodes())
			twice := Generate(once, fourNodes())
			if d := cmp.Diff(once, twice); d != "" {
				t.Errorf("second Generate changed the policy:\n%s", d)
			}
			// Also after a render/parse cycle, as the ACL reconciler sees it.
			b, err := Render(once, nil)
			if err != nil {
				t.Fatal(err)
			}
			parsed, err := Parse(b)
			if err != nil {
				t.Fatal(err)
			}
			if d := cmp.Diff(once, Generate(parsed, fourNodes()), cmpopts.EquateEmpty()); d != "" {
				t.Errorf("Generate after Parse changed the policy:\n%s", d)
			}
		})
	}
}

func TestGeneratedTestsPass(t *testing.T) {
	p := Generate(validPolicy(), fourNodes())
	if issues := Validate(&p); len(issues) != 0 {
		t.Fatalf("generated policy has issues: %v", issues)
	}
	res := RunTests(&p)
	var accepts, denies int
	has179 := false
	for _, r := range res {
		if !r.OK {
			t.Errorf("%s: %s -> %s (%s) want %s got %s: %s", r.Path, r.Src, r.Dst, r.Proto, r.Want, r.Got, r.Reason)
		}
		if _, gen := p.Generated["tests"+idx(r.Index)]; !gen || strings.HasPrefix(r.Path, "sshTests") {
			continue
		}
		if r.Want == "accept" {
			accepts++
		} else {
			denies++
		}
		has179 = has179 || r.Src == "tag:k8s-node" && r.Dst == "tag:k8s-node:179"
	}
	if accepts < 5 || denies < 2 || !has179 {
		t.Errorf("generated %d accept and %d deny assertions (179 node-to-node: %v)", accepts, denies, has179)
	}
	// The group deny test is present since the base has a group.
	found := false
	for _, tt := range p.Tests {
		found = found || tt.Src == "group:admins" && slices.Contains(tt.Deny, "tag:k8s-node:10250")
	}
	if !found {
		t.Error("no deny test for group:admins to the kubelet")
	}
}

func TestRemovingPodGrantFailsPodTest(t *testing.T) {
	p := Generate(Policy{Groups: map[string][]string{"group:admins": {"alice@example.com"}}}, fourNodes())
	i := slices.IndexFunc(p.Grants, func(g Grant) bool { return slices.Equal(g.Dst, []string{"pods"}) && slices.Equal(g.IP, []string{"*"}) })
	if i < 0 {
		t.Fatal("no pod grant generated")
	}
	p.Grants = slices.Delete(p.Grants, i, i+1)
	failed := map[string]bool{}
	for _, r := range RunTests(&p) {
		if !r.OK {
			failed[r.Src+" -> "+r.Dst] = true
		}
	}
	for _, want := range []string{"10.244.0.10 -> 10.244.1.10:443", "10.244.0.10 -> 10.244.1.10:53", "tag:k8s-node -> 10.244.1.10:8080"} {
		if !failed[want] {
			t.Errorf("%s still passes without the pod grant; failures: %v", want, failed)
		}
	}
	if len(failed) != 3 {
		t.Errorf("unexpected failures: %v", failed)
	}
}

func grantTo(p Policy, ip string) *Grant {
	for i := range p.Grants {
		if slices.Equal(p.Grants[i].IP, []string{ip}) {
			return &p.Grants[i]
		}
	}
	return nil
}

func TestGenerateIdentities(t *testing.T) {
	in := fourNodes()
	in.NodeTag = ""
	in.BGPPort = 0
	in.Nodes[0].Tags = nil                 // control plane with no tags: NodeTag
	in.Nodes[3].Tags = []string{"tag:lab"} // a worker without NodeTag: its own tag
	p := Generate(Policy{}, in)
	if g := grantTo(p, "tcp:6443"); g == nil || !slices.Equal(g.Dst, []string{DefaultNodeTag}) {
		t.Errorf("api server grant %+v, want dst [%s]", g, DefaultNodeTag)
	}
	if g := grantTo(p, "tcp:179"); g == nil || !slices.Equal(g.Src, []string{"tag:k8s-node", "tag:lab"}) {
		t.Errorf("bgp grant %+v", g)
	}
	if _, ok := p.TagOwners["tag:lab"]; !ok {
		t.Error("tag:lab got no owner")
	}
	if r := p.AutoApprovers.Routes["10.244.0.0/16"]; !slices.Equal(r, []string{"tag:k8s-node", "tag:lab"}) {
		t.Errorf("pod route approvers %v", r)
	}
	for _, r := range RunTests(&p) {
		if !r.OK {
			t.Errorf("%s failed: %s", r.Path, r.Reason)
		}
	}

	in = fourNodes()
	in.Nodes = in.Nodes[1:] // no control plane
	in.PodCIDR = netip.Prefix{}
	p = Generate(Policy{}, in)
	if grantTo(p, "tcp:6443") != nil || grantTo(p, "tcp:2379-2380") != nil || grantTo(p, "*") != nil {
		t.Errorf("control-plane or pod grants without control plane / pod CIDR: %+v", p.Grants)
	}
	if _, ok := p.Hosts["pods"]; ok || p.AutoApprovers != nil {
		t.Errorf("pod alias or approvers without a pod CIDR: %+v %+v", p.Hosts, p.AutoApprovers)
	}
}

func TestGenerateAliasConflict(t *testing.T) {
	base := Policy{Hosts: map[string]string{"pods": "10.0.0.0/8", "services": "10.96.0.0/12"}}
	p := Generate(base, fourNodes())
	if p.Hosts["pods"] != "10.0.0.0/8" || p.Hosts["k8s-pods"] != "10.244.0.0/16" {
		t.Errorf("hosts %v", p.Hosts)
	}
	if _, gen := p.Generated[`hosts["services"]`]; gen {
		t.Error("existing matching services alias marked generated")
	}
	if g := grantTo(p, "*"); g == nil || !slices.Equal(g.Dst, []string{"k8s-pods"}) {
		t.Errorf("pod grant %+v", g)
	}
	for _, r := range RunTests(&p) {
		if !r.OK {
			t.Errorf("%s failed: %s", r.Path, r.Reason)
		}
	}
}

func TestGenerateApproverAppended(t *testing.T) {
	base := Policy{
		Groups:        map[string][]string{"group:admins": {"alice@example.com"}},
		AutoApprovers: &AutoApprovers{Routes: map[string][]string{"10.244.0.0/16": {"group:admins"}}},
	}
	p := Generate(base, fourNodes())
	path := `autoApprovers.routes["10.244.0.0/16"][1]`
	if r := p.AutoApprovers.Routes["10.244.0.0/16"]; !slices.Equal(r, []string{"group:admins", "tag:k8s-node"}) || p.Generated[path] == "" {
		t.Fatalf("approvers %v, notes %v", r, p.Generated)
	}
	b, err := Render(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "\"group:admins\",\n\t\t\t\t"+GeneratedPrefix) {
		t.Errorf("appended approver not commented:\n%s", b)
	}
	q, err := Parse(b)
	if err != nil || q.Generated[path] != p.Generated[path] {
		t.Errorf("Parse lost the note: %v %v", q.Generated, err)
	}
}

func TestGenerateSkipsDenyTestsThatWouldFail(t *testing.T) {
	base := Policy{
		Groups: map[string][]string{"group:admins": {"alice@example.com"}},
		Grants: []Grant{
			{Src: []string{"group:admins"}, Dst: []string{"*"}, IP: []string{"*"}},
			{Src: []string{"*"}, Dst: []string{"tag:aws"}, IP: []string{"tcp:2379"}},
		},
	}
	p := Generate(base, fourNodes())
	for _, tt := range p.Tests {
		if len(tt.Deny) > 0 {
			t.Errorf("deny test generated although the user's rules allow it: %+v", tt)
		}
	}
	for _, r := range RunTests(&p) {
		if !r.OK {
			t.Errorf("%s failed: %s", r.Path, r.Reason)
		}
	}
}

func TestSampleAddr(t *testing.T) {
	for _, tc := range []struct {
		pfx  string
		off  uint64
		want string
	}{
		{"10.244.0.0/16", 10, "10.244.0.10"},
		{"10.244.0.0/16", 266, "10.244.1.10"},
		{"10.244.0.0/30", 266, "10.244.0.1"},
		{"10.244.7.0/24", 10, "10.244.7.10"},
		{"255.255.255.0/24", 266, "255.255.255.1"},
		{"fd00:10:244::/56", 266, "fd00:10:244::10a"},
	} {
		if got := sampleAddr(netip.MustParsePrefix(tc.pfx), tc.off); got != tc.want {
			t.Errorf("sampleAddr(%s, %d) = %s, want %s", tc.pfx, tc.off, got, tc.want)
		}
	}
}
