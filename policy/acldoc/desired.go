package acldoc

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/ducksnest/netd/policy/desired"
)

// Desired builds the tailnet part of the desired state from a rendered
// policy document: the document itself for Tailscale, its headscale form
// (ForHeadscale), and for each the offline verdict (Validate's issues and
// every test assertion as RunTests evaluates it), so that the writer needs
// no parsing or evaluation of its own. Each form is evaluated as it is
// written: parsed back from its HuJSON. ApprovedRoutes come from the
// document's autoApprovers; NodeTag is the caller's. It is pure; the error
// says that doc is not a policy document.
func Desired(doc []byte) (desired.Tailnet, error) {
	p, err := Parse(doc)
	if err != nil {
		return desired.Tailnet{}, err
	}
	return desired.Tailnet{
		Tailscale:      verdict(doc, &p),
		Headscale:      headscaleDocument(doc, p),
		ApprovedRoutes: approvedRoutes(&p),
	}, nil
}

// headscaleDocument is the headscale form of doc (parsed as p) with its
// verdict, or says why there is none.
func headscaleDocument(doc []byte, p Policy) desired.TailnetDocument {
	hs, err := forHeadscale(doc, p)
	if err != nil {
		return desired.TailnetDocument{Err: err.Error()}
	}
	if len(p.Grants) > 0 { // else hs is doc
		if p, err = Parse(hs); err != nil {
			return desired.TailnetDocument{Err: "reading back the headscale form: " + err.Error()}
		}
	}
	return verdict(hs, &p)
}

// verdict validates p (parsed from doc) and runs its tests.
func verdict(doc []byte, p *Policy) desired.TailnetDocument {
	d := desired.TailnetDocument{HuJSON: doc}
	for _, is := range Validate(p) {
		d.Issues = append(d.Issues, is.String())
	}
	results := RunTests(p)
	d.Tests = make([]desired.TailnetTest, 0, len(results))
	for _, r := range results {
		d.Tests = append(d.Tests, desired.TailnetTest{
			Path: r.Path, Src: r.Src, Dst: r.Dst, Proto: r.Proto, Want: r.Want, Got: r.Got, OK: r.OK,
			Reason: r.Reason, Generated: p.Generated[topEntry(r.Path)],
		})
	}
	return d
}

// topEntry is the entry of a section that path lies in:
// tests[3].accept[1] -> tests[3].
func topEntry(path string) string {
	if i := strings.Index(path, "]"); i >= 0 {
		return path[:i+1]
	}
	return path
}

// approvedRoutes maps each auto-approved route to its approvers.
func approvedRoutes(p *Policy) map[netip.Prefix][]string {
	if p.AutoApprovers == nil || len(p.AutoApprovers.Routes) == 0 {
		return nil
	}
	out := make(map[netip.Prefix][]string, len(p.AutoApprovers.Routes))
	for k, approvers := range p.AutoApprovers.Routes {
		if pfx, err := netip.ParsePrefix(k); err == nil {
			out[pfx.Masked()] = slices.Clone(approvers)
		}
	}
	return out
}
