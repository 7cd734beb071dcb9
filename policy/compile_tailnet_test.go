package policy

import (
	"strings"
	"testing"

	"github.com/ducksnest/netd/policy/acldoc"
)

// TestCompileTailnetForms: the compiled state holds both forms of the
// tailnet policy with their offline verdicts, so that the ACL writer does
// no parsing or evaluation; the headscale form keeps the semantics of the
// grants it rewrites.
func TestCompileTailnetForms(t *testing.T) {
	s := mustCompile(t, loadExample(t))
	ts, hs := &s.Tailnet.Tailscale, &s.Tailnet.Headscale
	if ts.Err != "" || len(ts.Issues) > 0 || len(ts.Tests) == 0 || len(ts.Failed()) > 0 {
		t.Fatalf("tailscale form: err %q, issues %v, %d assertions, failed %+v", ts.Err, ts.Issues, len(ts.Tests), ts.Failed())
	}
	if hs.Err != "" || len(hs.Issues) > 0 || len(hs.Tests) != len(ts.Tests) {
		t.Fatalf("headscale form: err %q, issues %v, %d assertions (tailscale form: %d)", hs.Err, hs.Issues, len(hs.Tests), len(ts.Tests))
	}
	for _, r := range hs.Failed() {
		t.Errorf("test fails after rewriting for headscale: %+v", r)
	}
	generated, written := 0, 0
	for _, r := range ts.Tests {
		if r.Generated != "" {
			generated++
		} else {
			written++
		}
	}
	if generated == 0 || written == 0 {
		t.Errorf("%d generated and %d written assertions: the origin of each is not recorded", generated, written)
	}

	p, err := acldoc.Parse(hs.HuJSON)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Grants) != 0 || len(p.ACLs) < 9 || len(p.Tests) == 0 {
		t.Fatalf("grants %d acls %d tests %d", len(p.Grants), len(p.ACLs), len(p.Tests))
	}
	flat := strings.Join(strings.Fields(string(hs.HuJSON)), "")
	for _, s := range []string{
		`"proto":"tcp"`, `"tag:aws:2379-2380"`, `"proto":"icmp"`, `"pods:*"`,
		"//generatedbynetd:pod-to-podandnode-to-podtraffic",
		"//Forheadscale0.26(nogrants)", "//Generatedbynetdfrom",
	} {
		if !strings.Contains(flat, s) {
			t.Errorf("headscale form lacks %s", s)
		}
	}
	again, err := acldoc.ForHeadscale(hs.HuJSON)
	if err != nil || string(again) != string(hs.HuJSON) {
		t.Errorf("ForHeadscale is not idempotent: %v", err)
	}
}
