package acldoc

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// TestResult is the outcome of one assertion of a test: one destination of
// one accept or deny list (tests), or one destination and login user of an
// SSH test (sshTests).
type TestResult struct {
	Index int    // index into Policy.Tests (or Policy.SSHTests)
	Path  string // e.g. `tests[0].accept[1]` or `sshTests[0].check[0]`
	Src   string
	Dst   string // "host:port"; for SSH "user@host"
	Proto string // "tcp", "udp", ...; "ssh" for sshTests
	Want  string // "accept" or "deny" ("check" too for SSH)
	Got   string // same vocabulary
	OK    bool
	// Reason names the rule that decided, or says why none did.
	Reason string
}

// tailscaleRanges hold Tailscale device addresses (CGNAT and Tailscale's
// IPv6 ULA); "*" covers them and approved subnet routes.
var tailscaleRanges = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("fd7a:115c:a1e0::/48"),
}

// atomKind is the kind of one concrete identity a test talks about.
type atomKind int

const (
	atomUser   atomKind = iota // a user's devices
	atomTag                    // devices carrying a tag
	atomPrefix                 // an address range
	atomToken                  // anything else, matched by name only
)

// atom is one identity: a user, a tag, an address range or a bare token
// (an empty group, "*", an autogroup).
type atom struct {
	kind   atomKind
	name   string
	prefix netip.Prefix
}

func (a atom) String() string {
	if a.kind == atomPrefix {
		return a.prefix.String()
	}
	return a.name
}

// sel is a pre-parsed rule selector.
type sel struct {
	raw     string
	kind    kind
	prefix  netip.Prefix    // kindPrefix, or a resolved kindHost (masked)
	members map[string]bool // kindGroup: its users
	ok      bool            // false if a host alias is undefined or malformed
}

// dstCap is one destination of a compiled rule with what it admits.
type dstCap struct {
	sel  sel
	caps []netCap
}

// rule is a grant or ACL compiled for evaluation.
type rule struct {
	path string
	src  []sel
	dst  []dstCap
}

// evaluator holds a policy compiled for repeated queries.
type evaluator struct {
	p        *Policy
	members  map[string]map[string]bool // group -> users
	approved []netip.Prefix             // autoApprovers routes
	rules    []rule
	// bySrc caches, per source identity, the rules whose src matches it.
	bySrc map[atom][]int
}

func newEvaluator(p *Policy) *evaluator {
	ev := &evaluator{p: p, members: map[string]map[string]bool{}, bySrc: map[atom][]int{}}
	for g, users := range p.Groups {
		m := map[string]bool{}
		for _, u := range users {
			m[u] = true
		}
		ev.members[g] = m
	}
	if p.AutoApprovers != nil {
		for r := range p.AutoApprovers.Routes {
			if pfx, ok := parsePrefix(r); ok {
				ev.approved = append(ev.approved, pfx.Masked())
			}
		}
		slices.SortFunc(ev.approved, func(a, b netip.Prefix) int { return strings.Compare(a.String(), b.String()) })
	}
	for i, g := range p.Grants {
		var caps []netCap
		for _, s := range g.IP {
			if c, err := parseIPSpec(s); err == nil {
				caps = append(caps, c)
			}
		}
		if len(caps) == 0 {
			continue // app-only grants give no network access
		}
		r := rule{path: fmt.Sprintf("grants[%d]", i), src: ev.sels(g.Src)}
		for _, d := range g.Dst {
			r.dst = append(r.dst, dstCap{sel: ev.sel(d), caps: caps})
		}
		ev.rules = append(ev.rules, r)
	}
	for i, a := range p.ACLs {
		if a.Action != "accept" {
			continue
		}
		c := netCap{}
		if a.Proto != "" {
			n, err := parseProto(a.Proto)
			if err != nil {
				continue
			}
			c.protos = []int{n}
		}
		r := rule{path: fmt.Sprintf("acls[%d]", i), src: ev.sels(a.Src)}
		for _, d := range a.Dst {
			host, ports, ok := splitHostPort(d)
			if !ok {
				continue
			}
			ps, err := parsePorts(ports)
			if err != nil {
				continue
			}
			dc := c
			dc.ports = ps
			r.dst = append(r.dst, dstCap{sel: ev.sel(host), caps: []netCap{dc}})
		}
		ev.rules = append(ev.rules, r)
	}
	return ev
}

func (ev *evaluator) sels(ss []string) []sel {
	out := make([]sel, 0, len(ss))
	for _, s := range ss {
		out = append(out, ev.sel(s))
	}
	return out
}

func (ev *evaluator) sel(s string) sel {
	k := classify(s)
	out := sel{raw: s, kind: k, ok: true}
	switch k {
	case kindPrefix:
		out.prefix, _ = parsePrefix(s)
		out.prefix = out.prefix.Masked()
	case kindHost:
		v, defined := ev.p.Hosts[s]
		out.prefix, out.ok = parsePrefix(v)
		out.prefix = out.prefix.Masked()
		out.ok = out.ok && defined
	case kindGroup:
		out.members = ev.members[s]
	case kindInvalid, kindIPSet:
		out.ok = false
	}
	return out
}

// expand turns a test's src or dst host into the identities it stands for:
// a group becomes its users, a host alias its prefix.
func (ev *evaluator) expand(s string) ([]atom, error) {
	switch classify(s) {
	case kindUser:
		return []atom{{kind: atomUser, name: s}}, nil
	case kindTag:
		return []atom{{kind: atomTag, name: s}}, nil
	case kindGroup:
		users, ok := ev.p.Groups[s]
		if !ok {
			return nil, fmt.Errorf("group %q is not defined", s)
		}
		if len(users) == 0 {
			return []atom{{kind: atomToken, name: s}}, nil
		}
		out := make([]atom, 0, len(users))
		for _, u := range users {
			out = append(out, atom{kind: atomUser, name: u})
		}
		return out, nil
	case kindPrefix, kindHost:
		sl := ev.sel(s)
		if !sl.ok {
			return nil, fmt.Errorf("host %q is not defined", s)
		}
		return []atom{{kind: atomPrefix, prefix: sl.prefix, name: s}}, nil
	case kindAny, kindAutogroup:
		return []atom{{kind: atomToken, name: s}}, nil
	}
	return nil, fmt.Errorf("%q is not a user, group, tag, host, IP or CIDR", s)
}

// inTailnet reports whether p lies in Tailscale's own ranges or inside an
// approved subnet route: the addresses "*" covers.
func (ev *evaluator) inTailnet(p netip.Prefix) bool {
	for _, r := range tailscaleRanges {
		if contains(r, p) {
			return true
		}
	}
	for _, r := range ev.approved {
		if contains(r, p) {
			return true
		}
	}
	return false
}

// contains reports whether outer contains all of inner.
func contains(outer, inner netip.Prefix) bool {
	return outer.Bits() <= inner.Bits() && outer.Contains(inner.Addr())
}

// matches reports whether rule selector s covers identity a. self is the
// source identity, for autogroup:self.
func (ev *evaluator) matches(s sel, a atom, self *atom) bool {
	if !s.ok {
		return false
	}
	switch s.kind {
	case kindAny:
		switch a.kind {
		case atomPrefix:
			return ev.inTailnet(a.prefix)
		case atomToken:
			return a.name != "autogroup:internet"
		}
		return true
	case kindUser:
		return a.kind == atomUser && a.name == s.raw
	case kindGroup:
		return a.kind == atomUser && s.members[a.name] || a.kind == atomToken && a.name == s.raw
	case kindTag:
		return a.kind == atomTag && a.name == s.raw
	case kindPrefix, kindHost:
		return a.kind == atomPrefix && contains(s.prefix, a.prefix)
	case kindAutogroup:
		switch s.raw {
		case "autogroup:member":
			return a.kind == atomUser || a.kind == atomToken && a.name == s.raw
		case "autogroup:tagged":
			return a.kind == atomTag || a.kind == atomToken && a.name == s.raw
		case "autogroup:self":
			return a.kind == atomUser && self != nil && self.kind == atomUser && self.name == a.name
		case "autogroup:danger-all":
			return true
		}
		return a.kind == atomToken && a.name == s.raw
	}
	return false
}

// allowedBy returns the path of the first rule that lets src reach dst on
// proto/port, or "".
func (ev *evaluator) allowedBy(src, dst atom, proto, port int) string {
	for _, i := range ev.rulesFrom(src) {
		r := &ev.rules[i]
		for _, d := range r.dst {
			if !ev.matches(d.sel, dst, &src) {
				continue
			}
			for _, c := range d.caps {
				if c.allows(proto, port) {
					return r.path
				}
			}
		}
	}
	return ""
}

// rulesFrom returns the indices of the rules whose src matches src.
func (ev *evaluator) rulesFrom(src atom) []int {
	if idxs, ok := ev.bySrc[src]; ok {
		return idxs
	}
	idxs := []int{}
	for i := range ev.rules {
		for _, s := range ev.rules[i].src {
			if ev.matches(s, src, nil) {
				idxs = append(idxs, i)
				break
			}
		}
	}
	ev.bySrc[src] = idxs
	return idxs
}

// RunTests evaluates every entry of p.Tests against p's grants and ACLs and
// every entry of p.SSHTests against its SSH rules, offline. Semantics
// describes what is modelled.
func RunTests(p *Policy) []TestResult {
	if p == nil {
		return nil
	}
	ev := newEvaluator(p)
	var out []TestResult
	for i, t := range p.Tests {
		out = append(out, ev.runTest(i, t)...)
	}
	for i, t := range p.SSHTests {
		out = append(out, ev.runSSHTest(i, t)...)
	}
	return out
}

func (ev *evaluator) runTest(i int, t Test) []TestResult {
	protoName := strings.ToLower(t.Proto)
	if protoName == "" {
		protoName = "tcp"
	}
	proto, perr := parseProto(protoName)
	srcs, serr := ev.expand(t.Src)
	var out []TestResult
	for _, l := range []struct {
		want string
		dsts []string
	}{{"accept", t.Accept}, {"deny", t.Deny}} {
		for j, d := range l.dsts {
			res := TestResult{
				Index: i, Path: fmt.Sprintf("tests[%d].%s[%d]", i, l.want, j),
				Src: t.Src, Dst: d, Proto: protoName, Want: l.want,
			}
			res.Got, res.Reason = ev.decide(srcs, serr, d, proto, perr, l.want)
			res.OK = res.Got == l.want
			out = append(out, res)
		}
	}
	return out
}

// decide evaluates one test destination for every source identity. The
// result is "accept" only if every (src, dst) pair is allowed and "deny"
// only if none is; a mixed outcome is reported against want.
func (ev *evaluator) decide(srcs []atom, serr error, d string, proto int, perr error, want string) (got, reason string) {
	if serr != nil {
		return "", "invalid src: " + serr.Error()
	}
	if perr != nil {
		return "", "invalid proto: " + perr.Error()
	}
	host, portStr, ok := splitHostPort(d)
	if !ok || !looksLikePorts(portStr) {
		return "", fmt.Sprintf("invalid destination %q: want host:port", d)
	}
	port, err := strconv.Atoi(portStr)
	if err != nil || port < 0 || port > 65535 {
		return "", fmt.Sprintf("invalid destination %q: want one port", d)
	}
	dsts, err := ev.expand(host)
	if err != nil {
		return "", "invalid destination: " + err.Error()
	}
	var allowed, denied []string
	for _, s := range srcs {
		for _, dd := range dsts {
			if by := ev.allowedBy(s, dd, proto, port); by != "" {
				allowed = append(allowed, fmt.Sprintf("%s -> %s allowed by %s", s, dd, by))
			} else {
				denied = append(denied, fmt.Sprintf("no grant or ACL allows %s -> %s:%d", s, dd, port))
			}
		}
	}
	switch {
	case len(denied) == 0:
		return "accept", strings.Join(allowed, "; ")
	case len(allowed) == 0:
		return "deny", strings.Join(denied, "; ")
	case want == "accept":
		return "deny", "partly denied: " + strings.Join(denied, "; ")
	default:
		return "accept", "partly allowed: " + strings.Join(allowed, "; ")
	}
}
