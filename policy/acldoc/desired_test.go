package acldoc

import (
	"slices"
	"strings"
	"testing"
)

// expressible is validPolicy without its app grant, which headscale
// cannot take.
func expressible() Policy {
	p := validPolicy()
	p.Grants = slices.DeleteFunc(p.Grants, func(g Grant) bool { return len(g.App) > 0 })
	return p
}

func TestDesired(t *testing.T) {
	p := Generate(expressible(), fourNodes())
	doc, err := Render(p, []string{"test"})
	if err != nil {
		t.Fatal(err)
	}
	d, err := Desired(doc)
	if err != nil {
		t.Fatal(err)
	}
	if string(d.Tailscale.HuJSON) != string(doc) || len(d.Tailscale.Issues) > 0 || len(d.Tailscale.Tests) == 0 || len(d.Tailscale.Failed()) > 0 {
		t.Fatalf("tailscale form: issues %v, %d assertions, failed %+v", d.Tailscale.Issues, len(d.Tailscale.Tests), d.Tailscale.Failed())
	}
	if d.Headscale.Err != "" || strings.Contains(string(d.Headscale.HuJSON), `"grants"`) || len(d.Headscale.Failed()) > 0 ||
		len(d.Headscale.Tests) != len(d.Tailscale.Tests) {
		t.Fatalf("headscale form: err %q, failed %+v\n%s", d.Headscale.Err, d.Headscale.Failed(), d.Headscale.HuJSON)
	}
	if len(d.ApprovedRoutes) == 0 {
		t.Error("no approved routes")
	}
	// The assertions are RunTests' results, with the origin of each test.
	res := RunTests(&p)
	for i, r := range d.Tailscale.Tests {
		want := res[i]
		_, gen := p.Generated["tests"+idx(want.Index)]
		if strings.HasPrefix(want.Path, "sshTests") {
			_, gen = p.Generated["sshTests"+idx(want.Index)]
		}
		if r.Path != want.Path || r.Src != want.Src || r.Dst != want.Dst || r.Proto != want.Proto || r.Want != want.Want ||
			r.Got != want.Got || r.OK != want.OK || r.Reason != want.Reason || (r.Generated != "") != gen {
			t.Errorf("assertion %d = %+v, RunTests says %+v (generated %v)", i, r, want, gen)
		}
	}

	// A policy without grants is written to headscale as it is.
	plain := []byte("{\"acls\": [{\"action\": \"accept\", \"src\": [\"*\"], \"dst\": [\"*:*\"]}]}\n")
	if d, err := Desired(plain); err != nil || string(d.Headscale.HuJSON) != string(plain) {
		t.Errorf("no grants: %v\n%s", err, d.Headscale.HuJSON)
	}
}

func TestDesiredVerdicts(t *testing.T) {
	// Failing tests are failures in both forms.
	p := Generate(expressible(), fourNodes())
	i := slices.IndexFunc(p.Grants, func(g Grant) bool { return slices.Equal(g.Dst, []string{"pods"}) && slices.Equal(g.IP, []string{"*"}) })
	if i < 0 {
		t.Fatal("no pod grant")
	}
	p.Grants = slices.Delete(p.Grants, i, i+1)
	doc, err := Render(p, nil)
	if err != nil {
		t.Fatal(err)
	}
	d, err := Desired(doc)
	if err != nil {
		t.Fatal(err)
	}
	if len(d.Tailscale.Failed()) == 0 || len(d.Headscale.Failed()) != len(d.Tailscale.Failed()) {
		t.Errorf("failed assertions: tailscale %d, headscale %d", len(d.Tailscale.Failed()), len(d.Headscale.Failed()))
	}

	// A grant headscale cannot express leaves the Tailscale form intact.
	d, err = Desired([]byte(`{"grants": [{"src": ["*"], "dst": ["*"], "via": ["tag:exit"]}]}`))
	if err != nil || !strings.Contains(d.Headscale.Err, "via/app") || d.Headscale.HuJSON != nil || len(d.Tailscale.HuJSON) == 0 {
		t.Errorf("via grant: %v, headscale %+v", err, d.Headscale)
	}

	// What the validator rejects is recorded, not an error.
	d, err = Desired([]byte(`{"grants": [{"src": ["group:nobody"], "dst": ["*"], "ip": ["*"]}]}`))
	if err != nil || len(d.Tailscale.Issues) != 1 || !strings.Contains(d.Tailscale.Issues[0], "group:nobody") {
		t.Errorf("undefined group: %v, issues %q", err, d.Tailscale.Issues)
	}

	if _, err := Desired([]byte(`{"grants": [`)); err == nil {
		t.Error("a broken document was accepted")
	}
}
