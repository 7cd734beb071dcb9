package acldoc

import (
	"bytes"
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// stampPrefix starts the stamp line that package acl puts in front of every
// policy it writes; it is not part of the document's header.
const stampPrefix = "// netd-applied "

// ForHeadscale rewrites a rendered tailnet policy for headscale 0.26, which
// ignores "grants" silently (the policy would deny everything) and knows
// only legacy "acls": every grant becomes one accept rule per protocol,
// after the policy's own acls, keeping its generated-by comment. Tests
// stay (headscale ignores them; Desired evaluates them against this form).
// A grant with "via" or "app" cannot be expressed and is an error.
func ForHeadscale(body []byte) ([]byte, error) {
	p, err := Parse(body)
	if err != nil {
		return nil, err
	}
	return forHeadscale(body, p)
}

// forHeadscale is ForHeadscale of body, already parsed as p.
func forHeadscale(body []byte, p Policy) ([]byte, error) {
	if len(p.Grants) == 0 {
		return body, nil
	}
	gen := map[string]string{}
	for k, v := range p.Generated {
		if !strings.HasPrefix(k, "grants[") {
			gen[k] = v
		}
	}
	acls := slices.Clone(p.ACLs)
	for i, g := range p.Grants {
		if len(g.Via) > 0 || len(g.App) > 0 {
			return nil, fmt.Errorf("grants[%d] uses via/app, which headscale 0.26 cannot express", i)
		}
		more, err := grantToACLs(g)
		if err != nil {
			return nil, fmt.Errorf("grants[%d]: %w", i, err)
		}
		if reason, ok := p.Generated["grants["+strconv.Itoa(i)+"]"]; ok {
			gen["acls["+strconv.Itoa(len(acls))+"]"] = reason
		}
		acls = append(acls, more...)
	}
	p.ACLs, p.Grants, p.Generated = acls, nil, gen
	header := append(leadingComments(body),
		"For headscale 0.26 (no grants): netd rewrote every grant as acls with the same effect.")
	return Render(p, header)
}

// grantToACLs turns a grant into accept rules: one per protocol, each
// destination with the ports of that protocol.
func grantToACLs(g Grant) ([]ACL, error) {
	specs := g.IP
	if len(specs) == 0 {
		specs = []string{"*"}
	}
	ports := map[string][]string{} // proto ("" = any) -> port specs
	var order []string
	for _, s := range specs {
		proto, pts := "", s
		if s == "*" {
			pts = "*"
		} else if p, rest, ok := strings.Cut(s, ":"); ok {
			proto, pts = p, rest
		}
		if pts == "" {
			return nil, fmt.Errorf("bad ip spec %q", s)
		}
		if _, ok := ports[proto]; !ok {
			order = append(order, proto)
		}
		if !slices.Contains(ports[proto], pts) {
			ports[proto] = append(ports[proto], pts)
		}
	}
	out := make([]ACL, 0, len(order))
	for _, proto := range order {
		a := ACL{Action: "accept", Src: slices.Clone(g.Src), Proto: proto}
		for _, d := range g.Dst {
			for _, pt := range ports[proto] {
				a.Dst = append(a.Dst, d+":"+pt)
			}
		}
		out = append(out, a)
	}
	return out, nil
}

// leadingComments returns the "//" lines before the document's "{", without
// the slashes, and without a netd-applied stamp.
func leadingComments(b []byte) []string {
	var out []string
	for line := range bytes.SplitSeq(b, []byte("\n")) {
		s := strings.TrimSpace(string(line))
		if !strings.HasPrefix(s, "//") {
			break
		}
		if strings.HasPrefix(s, strings.TrimSpace(stampPrefix)) {
			continue
		}
		out = append(out, strings.TrimPrefix(strings.TrimPrefix(s, "//"), " "))
	}
	return out
}
