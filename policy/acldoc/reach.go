package acldoc

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Endpoint is one device as a policy names it: its tags (none for a
// device owned by a user) and its Tailscale address. A rule selector
// covers the device if it names one of its tags or a range holding its
// address.
type Endpoint struct {
	Tags []string
	Addr netip.Addr
}

// atoms are the identities a rule selector may match the device by.
func (e Endpoint) atoms() []atom {
	out := make([]atom, 0, len(e.Tags)+1)
	for _, t := range e.Tags {
		out = append(out, atom{kind: atomTag, name: t})
	}
	if e.Addr.IsValid() {
		out = append(out, atom{kind: atomPrefix, prefix: netip.PrefixFrom(e.Addr, e.Addr.BitLen())})
	}
	return out
}

// Evaluator answers reachability questions about one policy offline, with
// the semantics RunTests uses (Semantics describes them).
type Evaluator struct {
	ev *evaluator
}

// NewEvaluator compiles p for queries. p must not change while the
// Evaluator is in use.
func NewEvaluator(p *Policy) *Evaluator { return &Evaluator{ev: newEvaluator(p)} }

// Allows reports whether src may reach dst on proto ("tcp", "udp", "icmp",
// ...) and port, and the grant or ACL that allows it (e.g. "grants[3]").
func (e *Evaluator) Allows(src, dst Endpoint, proto string, port int) (bool, string, error) {
	n, err := parseProto(strings.ToLower(proto))
	if err != nil {
		return false, "", fmt.Errorf("protocol %q: %w", proto, err)
	}
	for _, s := range src.atoms() {
		for _, d := range dst.atoms() {
			if by := e.ev.allowedBy(s, d, n, port); by != "" {
				return true, by, nil
			}
		}
	}
	return false, "", nil
}

// Names reports whether the test host s (a tag, user, group, host alias,
// IP, CIDR or "*") stands for the device e.
func (e *Evaluator) Names(s string, ep Endpoint) bool {
	atoms, err := e.ev.expand(s)
	if err != nil {
		return false
	}
	for _, a := range atoms {
		switch a.kind {
		case atomTag:
			if slices.Contains(ep.Tags, a.name) {
				return true
			}
		case atomPrefix:
			if ep.Addr.IsValid() && a.prefix.Contains(ep.Addr) {
				return true
			}
		case atomToken:
			if a.name == "*" {
				return true
			}
		}
	}
	return false
}

// SplitHostPort splits a test destination "host:port" (the host may itself
// hold colons: "tag:x:22"). ok is false if it has no port.
func SplitHostPort(s string) (host, port string, ok bool) { return splitHostPort(s) }
