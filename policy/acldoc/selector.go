package acldoc

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// kind is what a selector string names.
type kind int

const (
	kindInvalid   kind = iota
	kindAny            // "*"
	kindUser           // alice@example.com
	kindGroup          // group:admins
	kindTag            // tag:k8s-node
	kindAutogroup      // autogroup:member
	kindPrefix         // 100.64.0.1 or 10.244.0.0/16
	kindHost           // an alias from the hosts section
	kindIPSet          // ipset:x (not modelled)
)

// Autogroups Tailscale knows, and where they may appear.
var (
	srcAutogroups = map[string]bool{
		"autogroup:member": true, "autogroup:tagged": true, "autogroup:shared": true,
		"autogroup:admin": true, "autogroup:owner": true, "autogroup:network-admin": true,
		"autogroup:it-admin": true, "autogroup:billing-admin": true, "autogroup:auditor": true,
		"autogroup:danger-all": true,
	}
	dstAutogroups = map[string]bool{
		"autogroup:member": true, "autogroup:tagged": true, "autogroup:self": true,
		"autogroup:internet": true, "autogroup:danger-all": true,
		"autogroup:admin": true, "autogroup:owner": true, "autogroup:network-admin": true,
		"autogroup:it-admin": true, "autogroup:billing-admin": true, "autogroup:auditor": true,
	}
)

// classify says what s names, without looking anything up.
func classify(s string) kind {
	switch {
	case s == "":
		return kindInvalid
	case s == "*":
		return kindAny
	case strings.HasPrefix(s, "group:"):
		return kindGroup
	case strings.HasPrefix(s, "tag:"):
		return kindTag
	case strings.HasPrefix(s, "autogroup:"):
		return kindAutogroup
	case strings.HasPrefix(s, "ipset:"):
		return kindIPSet
	case strings.Contains(s, "@"):
		return kindUser
	}
	if _, ok := parsePrefix(s); ok {
		return kindPrefix
	}
	if validHostName(s) {
		return kindHost
	}
	return kindInvalid
}

// parsePrefix parses an IP ("100.64.0.1", a /32 or /128) or a CIDR.
func parsePrefix(s string) (netip.Prefix, bool) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		return p, err == nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(a, a.BitLen()), true
}

// validHostName reports whether s can be a hosts alias: letters, digits,
// '-', '_' and '.', starting with a letter, and not an IP literal.
func validHostName(s string) bool {
	if s == "" || !isLetter(s[0]) {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !isLetter(c) && !isDigit(c) && c != '-' && c != '_' && c != '.' {
			return false
		}
	}
	return true
}

// validTagName reports whether s is "tag:" plus letters, digits and dashes,
// starting with a letter (Tailscale's rule for tag names).
func validTagName(s string) bool {
	n, ok := strings.CutPrefix(s, "tag:")
	if !ok || n == "" || !isLetter(n[0]) {
		return false
	}
	for i := 0; i < len(n); i++ {
		if c := n[i]; !isLetter(c) && !isDigit(c) && c != '-' {
			return false
		}
	}
	return true
}

// validGroupName reports whether s is "group:" plus a non-empty name
// without spaces, colons or '@'.
func validGroupName(s string) bool {
	n, ok := strings.CutPrefix(s, "group:")
	return ok && n != "" && !strings.ContainsAny(n, " \t:@,")
}

// validUser reports whether s looks like a Tailscale login name: a local
// part, '@', and a domain (or a provider such as "github").
func validUser(s string) bool {
	local, domain, ok := strings.Cut(s, "@")
	return ok && local != "" && domain != "" && !strings.ContainsAny(s, " \t:,*") &&
		!strings.Contains(domain, "@")
}

func isLetter(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func isDigit(c byte) bool  { return '0' <= c && c <= '9' }

// IP protocol numbers used by the evaluator.
const (
	protoICMP   = 1
	protoTCP    = 6
	protoUDP    = 17
	protoICMPv6 = 58
	protoSCTP   = 132
)

// protoNames are the protocol names Tailscale accepts in ACL "proto",
// grant ip specs and test "proto".
var protoNames = map[string]int{
	"icmp": protoICMP, "igmp": 2, "ipv4": 4, "ip-in-ip": 4, "tcp": protoTCP, "egp": 8,
	"igp": 9, "udp": protoUDP, "gre": 47, "esp": 50, "ah": 51, "ipv6-icmp": protoICMPv6,
	"sctp": protoSCTP,
}

// defaultProtos is what a rule without a protocol matches (Tailscale's
// FilterRule default: TCP, UDP and ICMP).
var defaultProtos = []int{protoTCP, protoUDP, protoICMP, protoICMPv6}

// parseProto parses a protocol name or IANA number (1-255).
func parseProto(s string) (int, error) {
	if n, ok := protoNames[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > 255 {
		return 0, fmt.Errorf("unknown protocol %q", s)
	}
	return n, nil
}

// hasPorts reports whether a protocol carries ports.
func hasPorts(proto int) bool {
	return proto == protoTCP || proto == protoUDP || proto == protoSCTP
}

// portRange is an inclusive range of ports.
type portRange struct{ lo, hi int }

// portSet is a list of ranges; all means "*".
type portSet struct {
	all    bool
	ranges []portRange
}

func (s portSet) contains(port int) bool {
	if s.all {
		return true
	}
	for _, r := range s.ranges {
		if r.lo <= port && port <= r.hi {
			return true
		}
	}
	return false
}

// parsePorts parses "*", "22", "80,443" or "8000-8099" (and lists of them).
func parsePorts(s string) (portSet, error) {
	if s == "*" {
		return portSet{all: true}, nil
	}
	if s == "" {
		return portSet{}, fmt.Errorf("empty port")
	}
	var ps portSet
	for part := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := parsePort(lo)
		if err != nil {
			return portSet{}, err
		}
		b := a
		if isRange {
			if b, err = parsePort(hi); err != nil {
				return portSet{}, err
			}
			if a > b {
				return portSet{}, fmt.Errorf("port range %q runs backwards", part)
			}
		}
		ps.ranges = append(ps.ranges, portRange{a, b})
	}
	return ps, nil
}

func parsePort(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n < 0 || n > 65535 || s == "" || s[0] == '+' || s[0] == '-' {
		return 0, fmt.Errorf("bad port %q (want 0-65535)", s)
	}
	return n, nil
}

// netCap is one network capability: protocols (nil: defaultProtos;
// anyProto: every protocol) and ports.
type netCap struct {
	anyProto bool
	protos   []int
	ports    portSet
}

// allows reports whether the capability admits proto/port. Ports only
// count for protocols that have them (Tailscale's filter admits ICMP to a
// destination if any port of it is allowed).
func (c netCap) allows(proto, port int) bool {
	if !c.anyProto {
		protos := c.protos
		if protos == nil {
			protos = defaultProtos
		}
		found := false
		for _, p := range protos {
			if p == proto {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	return !hasPorts(proto) || c.ports.contains(port)
}

// parseIPSpec parses a grant "ip" entry: "*", "tcp:443", "udp:1000-2000",
// "icmp:*", or a bare port spec "6443" (default protocols).
func parseIPSpec(s string) (netCap, error) {
	if s == "*" {
		return netCap{anyProto: true, ports: portSet{all: true}}, nil
	}
	protoStr, portStr, hasProto := strings.Cut(s, ":")
	if !hasProto {
		if _, err := parseProto(s); err == nil && !isDigit(s[0]) {
			return netCap{}, fmt.Errorf("protocol %q without ports", s)
		}
		ps, err := parsePorts(s)
		if err != nil {
			return netCap{}, err
		}
		return netCap{ports: ps}, nil
	}
	proto, err := parseProto(protoStr)
	if err != nil {
		return netCap{}, err
	}
	ps, err := parsePorts(portStr)
	if err != nil {
		return netCap{}, err
	}
	if !hasPorts(proto) && !ps.all {
		return netCap{}, fmt.Errorf("protocol %q has no ports; use %s:*", protoStr, protoStr)
	}
	return netCap{protos: []int{proto}, ports: ps}, nil
}

// splitHostPort splits an ACL or test destination "host:ports" at its last
// colon; an IPv6 host may be written in brackets.
func splitHostPort(s string) (host, ports string, ok bool) {
	i := strings.LastIndexByte(s, ':')
	if i <= 0 || i == len(s)-1 {
		return "", "", false
	}
	host, ports = s[:i], s[i+1:]
	if strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]") {
		host = host[1 : len(host)-1]
	}
	return host, ports, true
}

// Path helpers in the Issue.Path notation.
func idx(i int) string      { return "[" + strconv.Itoa(i) + "]" }
func key(k string) string   { return "[" + strconv.Quote(k) + "]" }
func field(f string) string { return "." + f }
