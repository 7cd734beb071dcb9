package acldoc

import (
	"fmt"
	"strings"
)

// sshDecision returns the action ("accept", "check" or "deny") the SSH
// rules give src logging in to dst as login, and the rule that decided.
// Rules are tried in order and the first match wins, as in tailssh.
func (ev *evaluator) sshDecision(src, dst atom, login string) (action, by string) {
	for i, r := range ev.p.SSH {
		if r.Action != "accept" && r.Action != "check" {
			continue
		}
		if !ev.anyMatch(r.Src, src, nil) || !ev.anyMatch(r.Dst, dst, &src) || !loginMatches(r.Users, login, src) {
			continue
		}
		return r.Action, fmt.Sprintf("ssh[%d]", i)
	}
	return "deny", ""
}

func (ev *evaluator) anyMatch(sels []string, a atom, self *atom) bool {
	for _, s := range sels {
		if ev.matches(ev.sel(s), a, self) {
			return true
		}
	}
	return false
}

// loginMatches reports whether an SSH rule's users list admits login for
// a connection from src.
func loginMatches(users []string, login string, src atom) bool {
	for _, u := range users {
		switch {
		case u == "autogroup:nonroot":
			if login != "root" {
				return true
			}
		case strings.HasPrefix(u, "localpart:*@"):
			domain := strings.TrimPrefix(u, "localpart:*@")
			local, d, ok := strings.Cut(src.name, "@")
			if src.kind == atomUser && ok && strings.EqualFold(d, domain) && local == login {
				return true
			}
		case u == login:
			return true
		}
	}
	return false
}

func (ev *evaluator) runSSHTest(i int, t SSHTest) []TestResult {
	srcs, serr := ev.expand(t.Src)
	var out []TestResult
	for _, l := range []struct {
		want  string
		users []string
	}{{"accept", t.Accept}, {"check", t.Check}, {"deny", t.Deny}} {
		for j, login := range l.users {
			for _, d := range t.Dst {
				res := TestResult{
					Index: i, Path: fmt.Sprintf("sshTests[%d].%s[%d]", i, l.want, j),
					Src: t.Src, Dst: login + "@" + d, Proto: "ssh", Want: l.want,
				}
				res.Got, res.Reason = ev.decideSSH(srcs, serr, d, login, l.want)
				res.OK = res.Got == l.want
				out = append(out, res)
			}
		}
	}
	return out
}

// decideSSH evaluates one login for every source and destination identity;
// if they disagree, the first answer that differs from want is reported.
func (ev *evaluator) decideSSH(srcs []atom, serr error, d, login, want string) (got, reason string) {
	if serr != nil {
		return "", "invalid src: " + serr.Error()
	}
	dsts, err := ev.expand(d)
	if err != nil {
		return "", "invalid destination: " + err.Error()
	}
	var reasons []string
	got = want
	for _, s := range srcs {
		for _, dd := range dsts {
			action, by := ev.sshDecision(s, dd, login)
			if by == "" {
				reasons = append(reasons, fmt.Sprintf("no SSH rule lets %s log in to %s as %s", s, dd, login))
			} else {
				reasons = append(reasons, fmt.Sprintf("%s -> %s as %s: %s by %s", s, dd, login, action, by))
			}
			if action != want && got == want {
				got = action
			}
		}
	}
	return got, strings.Join(reasons, "; ")
}

// Semantics says exactly which subset of Tailscale's policy semantics
// RunTests implements.
func Semantics() string {
	return `netd evaluates tailnet policy tests offline with a subset of Tailscale's semantics. ` +
		`Network access is the union of all grants (only their "ip" specs; "app"-only grants give none; "via" and device posture are ignored, so a via grant counts as if it applied everywhere) ` +
		`and all ACLs with action "accept"; everything else is denied. ` +
		`A grant ip spec "*" admits every protocol and port; "tcp:443", "udp:1-100", "icmp:*" name one protocol; a bare port "6443" and an ACL without "proto" admit TCP, UDP and ICMP. ` +
		`Ports only matter for TCP, UDP and SCTP: ICMP is admitted to a destination if any port of it is. ` +
		`A test without "proto" probes TCP. Each accept/deny entry names one "host:port". ` +
		`Identities: a user src matches a rule src naming that user, a group listing them, autogroup:member (approximated as every user, with no distinction of shared or external users) or "*"; ` +
		`a tag src matches that tag, autogroup:tagged or "*"; an IP, CIDR or host alias src matches rule srcs that are IPs, CIDRs or host aliases containing all of it, and "*" only if it lies in 100.64.0.0/10, fd7a:115c:a1e0::/48 or an autoApprovers route; ` +
		`tags carry no addresses, so an IP never matches a tag and a tag never matches a CIDR. ` +
		`A group as test src or dst stands for each of its users: the test accepts only if every member is allowed and denies only if none is (a group without members is matched by name). ` +
		`Destinations follow the same rules; a user or group dst means that user's devices, autogroup:self matches a dst user equal to the src user, ` +
		`"*" covers users, tags, Tailscale addresses and autoApprovers routes (taken as the approved subnet routes; routes approved by hand in the admin console are unknown), ` +
		`and autogroup:internet and user-role autogroups (autogroup:admin, ...) match only the same name, since roles and exit-node traffic are not modelled. ` +
		`Groups may not contain groups (Validate reports it), so no recursive expansion is done. ` +
		`SSH tests are evaluated against ssh rules in order, first match wins (accept or check); users "root", a literal name, "autogroup:nonroot" (anything but root) and "localpart:*@domain" are understood; checkPeriod is not evaluated. ` +
		`ipsets, postures, nodeAttrs, app capabilities and Tailscale Services are not modelled.`
}
