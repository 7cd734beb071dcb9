package acldoc

import (
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"
)

// Issue is one problem in a policy. Path is relative to the tailnet
// section, e.g. `grants[2].src[0]` or `groups["group:admins"][1]`.
type Issue struct {
	Path string
	Msg  string // what is wrong
	Hint string // how to fix it
}

func (i Issue) String() string {
	s := i.Path + ": " + i.Msg
	if i.Hint != "" {
		s += " (" + i.Hint + ")"
	}
	return s
}

// Validate reports every problem of p at once, in document order (map keys
// sorted). It checks the shape of each entry and that every group, tag and
// host it references is defined.
func Validate(p *Policy) []Issue {
	if p == nil {
		return nil
	}
	v := &validator{p: p}
	v.groups()
	v.tagOwners()
	v.hosts()
	v.autoApprovers()
	for i, g := range p.Grants {
		v.grant(fmt.Sprintf("grants[%d]", i), g)
	}
	for i, a := range p.ACLs {
		v.acl(fmt.Sprintf("acls[%d]", i), a)
	}
	for i, r := range p.SSH {
		v.ssh(fmt.Sprintf("ssh[%d]", i), r)
	}
	for i, t := range p.Tests {
		v.test(fmt.Sprintf("tests[%d]", i), t)
	}
	for i, t := range p.SSHTests {
		v.sshTest(fmt.Sprintf("sshTests[%d]", i), t)
	}
	return v.issues
}

type validator struct {
	p      *Policy
	issues []Issue
}

func (v *validator) add(path, msg, hint string) {
	v.issues = append(v.issues, Issue{Path: path, Msg: msg, Hint: hint})
}

// role says where a selector appears, which decides what it may be.
type role int

const (
	roleSrc role = iota
	roleDst
	roleOwner
	roleSSHSrc
	roleSSHDst
	roleTestSrc
	roleTestDst
	roleVia
)

var roleNames = map[role]string{
	roleSrc: "a source", roleDst: "a destination", roleOwner: "an owner or approver",
	roleSSHSrc: "an SSH source", roleSSHDst: "an SSH destination",
	roleTestSrc: "a test source", roleTestDst: "a test destination", roleVia: "a via router",
}

// allowed lists the kinds each role admits.
var allowed = map[role][]kind{
	roleSrc:     {kindAny, kindUser, kindGroup, kindTag, kindAutogroup, kindPrefix, kindHost},
	roleDst:     {kindAny, kindUser, kindGroup, kindTag, kindAutogroup, kindPrefix, kindHost},
	roleOwner:   {kindUser, kindGroup, kindTag, kindAutogroup},
	roleSSHSrc:  {kindUser, kindGroup, kindTag, kindAutogroup},
	roleSSHDst:  {kindUser, kindTag, kindAutogroup},
	roleTestSrc: {kindUser, kindGroup, kindTag, kindPrefix, kindHost},
	roleTestDst: {kindAny, kindUser, kindGroup, kindTag, kindAutogroup, kindPrefix, kindHost},
	roleVia:     {kindTag},
}

var roleAutogroups = map[role]map[string]bool{
	roleSrc:     srcAutogroups,
	roleDst:     dstAutogroups,
	roleOwner:   {"autogroup:member": true, "autogroup:admin": true, "autogroup:owner": true, "autogroup:network-admin": true, "autogroup:it-admin": true},
	roleSSHSrc:  {"autogroup:member": true, "autogroup:tagged": true, "autogroup:admin": true, "autogroup:owner": true, "autogroup:network-admin": true, "autogroup:it-admin": true},
	roleSSHDst:  {"autogroup:self": true, "autogroup:member": true, "autogroup:tagged": true},
	roleTestDst: {"autogroup:internet": true, "autogroup:member": true, "autogroup:tagged": true},
}

// wellFormed reports whether s is syntactically a selector of kind k.
func wellFormed(s string, k kind) bool {
	switch k {
	case kindAny, kindPrefix, kindHost:
		return true
	case kindUser:
		return validUser(s)
	case kindGroup:
		return validGroupName(s)
	case kindTag:
		return validTagName(s)
	case kindAutogroup:
		return srcAutogroups[s] || dstAutogroups[s]
	}
	return false
}

// looksLikePorts reports whether s is made of port-spec characters.
func looksLikePorts(s string) bool {
	return s != "" && strings.Trim(s, "0123456789-,*") == ""
}

// hasPortSuffix reports whether s is a well-formed selector followed by
// ":ports".
func hasPortSuffix(s string) bool {
	host, ports, ok := splitHostPort(s)
	if !ok || !looksLikePorts(ports) {
		return false
	}
	k := classify(host)
	return k != kindInvalid && wellFormed(host, k)
}

// ref checks one selector s at path used in role r.
func (v *validator) ref(path, s string, r role) {
	k := classify(s)
	if k == kindIPSet {
		v.add(path, fmt.Sprintf("%q: ipsets are not modelled by netd", s), "use a hosts alias or a CIDR instead")
		return
	}
	if s == "" {
		v.add(path, "empty entry", "remove it or write a user, group:, tag:, host alias, IP or CIDR")
		return
	}
	if k == kindInvalid || !wellFormed(s, k) {
		switch {
		case hasPortSuffix(s) && (r == roleSrc || r == roleDst):
			v.add(path, fmt.Sprintf("%q carries a port; grant src/dst take none", s),
				`move the port into the grant's "ip" list, e.g. "ip": ["tcp:443"]`)
		case k == kindTag:
			v.add(path, fmt.Sprintf("%q is not a valid tag name", s), `tags are "tag:" plus letters, digits and dashes`)
		case k == kindGroup:
			v.add(path, fmt.Sprintf("%q is not a valid group name", s), `groups are "group:" plus a name without spaces or colons`)
		case k == kindAutogroup:
			v.add(path, fmt.Sprintf("unknown autogroup %q", s), "use autogroup:member, tagged, self, internet, admin, owner, ...")
		default:
			v.add(path, fmt.Sprintf("%q is not a user, group, tag, autogroup, host alias, IP or CIDR", s),
				`write e.g. "alice@example.com", "group:admins", "tag:k8s-node", a hosts alias, "100.64.0.1" or "10.0.0.0/8"`)
		}
		return
	}
	if !slices.Contains(allowed[r], k) || k == kindAutogroup && !roleAutogroups[r][s] {
		v.add(path, fmt.Sprintf("%q cannot be %s", s, roleNames[r]), roleHint(r))
		return
	}
	switch k {
	case kindGroup:
		if _, ok := v.p.Groups[s]; !ok {
			v.add(path, fmt.Sprintf("group %q is not defined", s), fmt.Sprintf(`add %q to "groups" or fix the name`, s))
		}
	case kindTag:
		if _, ok := v.p.TagOwners[s]; !ok {
			v.add(path, fmt.Sprintf("tag %q has no tagOwners entry", s),
				fmt.Sprintf(`add "tagOwners": {%q: ["autogroup:admin"]} or fix the name`, s))
		}
	case kindHost:
		if _, ok := v.p.Hosts[s]; !ok {
			v.add(path, fmt.Sprintf("host %q is not defined", s), fmt.Sprintf(`add %q to "hosts" or use an IP or CIDR`, s))
		}
	}
}

func roleHint(r role) string {
	switch r {
	case roleOwner:
		return "owners and approvers are users, groups, tags or autogroup:admin/member"
	case roleSSHSrc:
		return "SSH sources are users, groups, tags or autogroup:member"
	case roleSSHDst:
		return "SSH destinations are tags, autogroup:self, or the source's own user"
	case roleTestSrc:
		return "a test source is one user, group, tag, host alias or IP"
	case roleVia:
		return "via lists tags of subnet routers or exit nodes"
	case roleSrc:
		return "autogroup:self and autogroup:internet are only valid as destinations"
	}
	return "see Tailscale's policy syntax reference for what this field takes"
}

func (v *validator) groups() {
	for _, name := range slices.Sorted(maps.Keys(v.p.Groups)) {
		path := "groups" + key(name)
		if !validGroupName(name) {
			v.add(path, fmt.Sprintf("group name %q does not start with \"group:\"", name),
				fmt.Sprintf("rename it to %q", "group:"+strings.TrimPrefix(name, "group:")))
		}
		for i, m := range v.p.Groups[name] {
			mp := path + idx(i)
			switch classify(m) {
			case kindUser:
				v.ref(mp, m, roleOwner)
			case kindGroup:
				v.add(mp, fmt.Sprintf("groups cannot contain groups (%q)", m), "list that group's users here instead")
			case kindTag:
				v.add(mp, fmt.Sprintf("groups cannot contain tags (%q)", m), "name the tag directly in the rule")
			default:
				v.add(mp, fmt.Sprintf("group member %q is not a user", m), `members are login names such as "alice@example.com"`)
			}
		}
	}
}

func (v *validator) tagOwners() {
	for _, name := range slices.Sorted(maps.Keys(v.p.TagOwners)) {
		path := "tagOwners" + key(name)
		if !validTagName(name) {
			v.add(path, fmt.Sprintf("tag name %q is not \"tag:\" plus letters, digits and dashes", name),
				`rename it, e.g. "tag:k8s-node"`)
		}
		for i, o := range v.p.TagOwners[name] {
			v.ref(path+idx(i), o, roleOwner)
		}
	}
}

func (v *validator) hosts() {
	for _, name := range slices.Sorted(maps.Keys(v.p.Hosts)) {
		path := "hosts" + key(name)
		if classify(name) != kindHost {
			v.add(path, fmt.Sprintf("host alias %q is not a plain name", name),
				"use letters, digits, '-', '_' and '.', starting with a letter, without a prefix like tag:")
		}
		val := v.p.Hosts[name]
		pfx, ok := parsePrefix(val)
		switch {
		case !ok:
			v.add(path, fmt.Sprintf("host value %q is not an IP or CIDR", val), `write e.g. "100.64.0.1" or "10.244.0.0/16"`)
		case pfx != pfx.Masked():
			v.add(path, fmt.Sprintf("host value %q has bits set past the prefix length", val), fmt.Sprintf("write %q", pfx.Masked().String()))
		}
	}
}

func (v *validator) autoApprovers() {
	aa := v.p.AutoApprovers
	if aa == nil {
		return
	}
	for _, r := range slices.Sorted(maps.Keys(aa.Routes)) {
		path := "autoApprovers.routes" + key(r)
		pfx, ok := parsePrefix(r)
		switch {
		case !ok || !strings.Contains(r, "/"):
			v.add(path, fmt.Sprintf("route %q is not a CIDR", r), `write e.g. "10.244.0.0/16"`)
		case pfx != pfx.Masked():
			v.add(path, fmt.Sprintf("route %q is not canonical", r), fmt.Sprintf("write %q", pfx.Masked().String()))
		}
		if len(aa.Routes[r]) == 0 {
			v.add(path, "route has no approvers", `list who may advertise it, e.g. ["tag:k8s-node"]`)
		}
		for i, a := range aa.Routes[r] {
			v.ref(path+idx(i), a, roleOwner)
		}
	}
	for i, a := range aa.ExitNode {
		v.ref("autoApprovers.exitNode"+idx(i), a, roleOwner)
	}
}

func (v *validator) list(path, name string, items []string, r role) {
	if len(items) == 0 {
		v.add(path+field(name), fmt.Sprintf("%s is empty", name), fmt.Sprintf("list at least one %s, or delete the rule", strings.TrimPrefix(roleNames[r], "a ")))
	}
	for i, s := range items {
		v.ref(path+field(name)+idx(i), s, r)
	}
}

func (v *validator) grant(path string, g Grant) {
	v.list(path, "src", g.Src, roleSrc)
	v.list(path, "dst", g.Dst, roleDst)
	if len(g.IP) == 0 && len(g.App) == 0 {
		v.add(path, "grant has neither ip nor app", `add "ip": ["*"] or specific specs such as "tcp:443"`)
	}
	for i, s := range g.IP {
		if _, err := parseIPSpec(s); err != nil {
			v.add(path+".ip"+idx(i), fmt.Sprintf("bad ip spec %q: %v", s, err),
				`write "*", "tcp:443", "udp:1000-2000", "icmp:*" or a bare port "6443"`)
		}
	}
	for i, s := range g.Via {
		v.ref(path+".via"+idx(i), s, roleVia)
	}
}

func (v *validator) acl(path string, a ACL) {
	if a.Action != "accept" {
		v.add(path+".action", fmt.Sprintf("action %q is not \"accept\"", a.Action), `ACLs only allow; write "accept" (everything else is denied by default)`)
	}
	portless := false
	if a.Proto != "" {
		n, err := parseProto(a.Proto)
		if err != nil {
			v.add(path+".proto", err.Error(), "use tcp, udp, sctp, icmp, ipv6-icmp, gre, esp, ah, igmp or an IANA number 1-255")
		}
		portless = err == nil && !hasPorts(n)
	}
	v.list(path, "src", a.Src, roleSrc)
	if len(a.Dst) == 0 {
		v.add(path+".dst", "dst is empty", `list at least one "host:ports", or delete the rule`)
	}
	for i, d := range a.Dst {
		dp := path + ".dst" + idx(i)
		host, ports, ok := splitHostPort(d)
		if !ok || !looksLikePorts(ports) {
			v.add(dp, fmt.Sprintf("destination %q has no port", d), fmt.Sprintf(`write %q or %q`, d+":*", d+":443"))
			continue
		}
		v.ref(dp, host, roleDst)
		if _, err := parsePorts(ports); err != nil {
			v.add(dp, fmt.Sprintf("destination %q: %v", d, err), `ports are "*", "22", "80,443" or "8000-8099"`)
		} else if portless && ports != "*" {
			v.add(dp, fmt.Sprintf("protocol %q has no ports but %q names some", a.Proto, d), fmt.Sprintf("write %q", host+":*"))
		}
	}
}

func validSSHUser(s string) bool {
	if s == "" || !(isLetter(s[0]) || s[0] == '_') {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !isLetter(c) && !isDigit(c) && c != '_' && c != '-' && c != '.' {
			return false
		}
	}
	return true
}

// validLogin reports whether s may appear in an SSH rule's users list.
func validLogin(s string) bool {
	if s == "autogroup:nonroot" || s == "root" {
		return true
	}
	if rest, ok := strings.CutPrefix(s, "localpart:*@"); ok {
		return rest != "" && !strings.ContainsAny(rest, "@* ")
	}
	return validSSHUser(s)
}

func (v *validator) ssh(path string, r SSHRule) {
	if r.Action != "accept" && r.Action != "check" {
		v.add(path+".action", fmt.Sprintf("SSH action %q is not accept or check", r.Action), `write "accept", or "check" to require re-authentication`)
	}
	if r.CheckPeriod != "" {
		if r.Action != "check" {
			v.add(path+".checkPeriod", "checkPeriod is only valid with action \"check\"", `remove it or set "action": "check"`)
		} else if _, err := time.ParseDuration(r.CheckPeriod); err != nil && r.CheckPeriod != "always" {
			v.add(path+".checkPeriod", fmt.Sprintf("checkPeriod %q is not a duration", r.CheckPeriod), `write e.g. "12h" or "always"`)
		}
	}
	v.list(path, "src", r.Src, roleSSHSrc)
	v.list(path, "dst", r.Dst, roleSSHDst)
	for i, d := range r.Dst {
		if classify(d) == kindUser && !(len(r.Src) == 1 && r.Src[0] == d) {
			v.add(path+".dst"+idx(i), fmt.Sprintf("SSH destination user %q is allowed only when the source is the same user", d), `use "autogroup:self" or a tag`)
		}
	}
	if len(r.Users) == 0 {
		v.add(path+".users", "users is empty", `list login names, e.g. ["autogroup:nonroot"] or ["root"]`)
	}
	for i, u := range r.Users {
		if !validLogin(u) {
			v.add(path+".users"+idx(i), fmt.Sprintf("%q is not a login user", u), `write a Unix user name, "root", "autogroup:nonroot" or "localpart:*@example.com"`)
		}
	}
}

func (v *validator) test(path string, t Test) {
	if t.Src == "" {
		v.add(path+".src", "test has no src", `name one user, group, tag, host alias or IP`)
	} else {
		v.ref(path+".src", t.Src, roleTestSrc)
	}
	if t.Proto != "" {
		if _, err := parseProto(t.Proto); err != nil {
			v.add(path+".proto", err.Error(), "use tcp, udp, sctp, icmp or an IANA number")
		}
	}
	if len(t.Accept) == 0 && len(t.Deny) == 0 {
		v.add(path, "test has neither accept nor deny", `add "accept": ["tag:x:443"] or "deny": [...]`)
	}
	v.testDsts(path+".accept", t.Accept)
	v.testDsts(path+".deny", t.Deny)
}

func (v *validator) testDsts(path string, dsts []string) {
	for i, d := range dsts {
		dp := path + idx(i)
		host, port, ok := splitHostPort(d)
		if !ok || !looksLikePorts(port) {
			v.add(dp, fmt.Sprintf("test destination %q has no port", d), fmt.Sprintf("write %q", d+":443"))
			continue
		}
		v.ref(dp, host, roleTestDst)
		if _, err := parsePort(port); err != nil {
			v.add(dp, fmt.Sprintf("test destination %q: %v", d, err), "a test names one port, e.g. tag:x:22")
		}
	}
}

func (v *validator) sshTest(path string, t SSHTest) {
	if t.Src == "" {
		v.add(path+".src", "SSH test has no src", "name one user, group or tag")
	} else {
		v.ref(path+".src", t.Src, roleSSHSrc)
	}
	v.list(path, "dst", t.Dst, roleSSHDst)
	if len(t.Accept)+len(t.Check)+len(t.Deny) == 0 {
		v.add(path, "SSH test has no accept, check or deny users", `add e.g. "accept": ["root"]`)
	}
	for _, l := range []struct {
		name  string
		users []string
	}{{"accept", t.Accept}, {"check", t.Check}, {"deny", t.Deny}} {
		for i, u := range l.users {
			if !validSSHUser(u) {
				v.add(path+"."+l.name+idx(i), fmt.Sprintf("%q is not a login user", u), "write a Unix user name such as root or ubuntu")
			}
		}
	}
}
