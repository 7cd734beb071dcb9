package acldoc

import (
	"strings"
	"testing"
)

// validPolicy is a small policy that uses every section correctly.
func validPolicy() Policy {
	return Policy{
		Groups:    map[string][]string{"group:admins": {"alice@example.com", "bob@example.com"}},
		TagOwners: map[string][]string{"tag:k8s-node": {"autogroup:admin"}, "tag:aws": {"group:admins", "tag:k8s-node"}},
		Hosts:     map[string]string{"pods": "10.244.0.0/16", "router": "192.168.0.1"},
		AutoApprovers: &AutoApprovers{
			Routes:   map[string][]string{"10.244.0.0/16": {"tag:k8s-node"}},
			ExitNode: []string{"group:admins"},
		},
		Grants: []Grant{
			{Src: []string{"group:admins"}, Dst: []string{"tag:k8s-node"}, IP: []string{"tcp:22", "udp:1-100", "icmp:*", "6443"}},
			{Src: []string{"pods", "100.64.0.0/10"}, Dst: []string{"pods", "10.96.0.1"}, IP: []string{"*"}},
			{Src: []string{"autogroup:member"}, Dst: []string{"autogroup:self"}, App: map[string]any{"example.com/cap/x": []any{}}},
		},
		ACLs: []ACL{
			{Action: "accept", Src: []string{"alice@example.com"}, Dst: []string{"router:80,443", "tag:aws:8000-8099", "[fd7a:115c:a1e0::1]:22"}},
			{Action: "accept", Src: []string{"*"}, Proto: "icmp", Dst: []string{"*:*"}},
		},
		SSH: []SSHRule{
			{Action: "check", Src: []string{"group:admins"}, Dst: []string{"tag:k8s-node"}, Users: []string{"root", "ubuntu"}, CheckPeriod: "12h"},
			{Action: "accept", Src: []string{"autogroup:member"}, Dst: []string{"autogroup:self"}, Users: []string{"autogroup:nonroot", "localpart:*@example.com"}},
		},
		Tests: []Test{
			{Src: "alice@example.com", Accept: []string{"router:443"}, Deny: []string{"tag:k8s-node:80"}},
			{Src: "10.244.1.5", Proto: "udp", Accept: []string{"pods:53"}},
		},
		SSHTests: []SSHTest{{Src: "alice@example.com", Dst: []string{"tag:k8s-node"}, Check: []string{"root"}}},
	}
}

func TestValidateValid(t *testing.T) {
	p := validPolicy()
	if issues := Validate(&p); len(issues) != 0 {
		t.Fatalf("valid policy has issues:\n%v", issues)
	}
	if Validate(nil) != nil {
		t.Error("Validate(nil) != nil")
	}
}

func TestValidate(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(p *Policy)
		path   string
		msg    string // substring of Msg
	}{
		{"group name without prefix", func(p *Policy) { p.Groups["admins"] = []string{"a@x.com"} }, `groups["admins"]`, `does not start with "group:"`},
		{"group contains group", func(p *Policy) { p.Groups["group:ops"] = []string{"group:admins"} }, `groups["group:ops"][0]`, "groups cannot contain groups"},
		{"group contains tag", func(p *Policy) { p.Groups["group:ops"] = []string{"c@x.com", "tag:aws"} }, `groups["group:ops"][1]`, "cannot contain tags"},
		{"group member not a user", func(p *Policy) { p.Groups["group:ops"] = []string{"carol"} }, `groups["group:ops"][0]`, "is not a user"},
		{"tag name without prefix", func(p *Policy) { p.TagOwners["k8s"] = []string{"autogroup:admin"} }, `tagOwners["k8s"]`, "is not \"tag:\""},
		{"tag name bad chars", func(p *Policy) { p.TagOwners["tag:k8s_node"] = []string{"autogroup:admin"} }, `tagOwners["tag:k8s_node"]`, "letters, digits and dashes"},
		{"tag owner undefined group", func(p *Policy) { p.TagOwners["tag:x"] = []string{"group:nope"} }, `tagOwners["tag:x"][0]`, `group "group:nope" is not defined`},
		{"tag owner bad autogroup", func(p *Policy) { p.TagOwners["tag:x"] = []string{"autogroup:self"} }, `tagOwners["tag:x"][0]`, "cannot be an owner"},
		{"host value not IP", func(p *Policy) { p.Hosts["db"] = "db.example.com" }, `hosts["db"]`, "not an IP or CIDR"},
		{"host value not canonical", func(p *Policy) { p.Hosts["lan"] = "192.168.0.1/24" }, `hosts["lan"]`, "bits set past"},
		{"host name not plain", func(p *Policy) { p.Hosts["tag:x"] = "10.0.0.1" }, `hosts["tag:x"]`, "not a plain name"},
		{"route not canonical", func(p *Policy) { p.AutoApprovers.Routes["10.244.1.0/16"] = []string{"tag:k8s-node"} }, `autoApprovers.routes["10.244.1.0/16"]`, "not canonical"},
		{"route not CIDR", func(p *Policy) { p.AutoApprovers.Routes["10.1.1.1"] = []string{"tag:k8s-node"} }, `autoApprovers.routes["10.1.1.1"]`, "not a CIDR"},
		{"route without approvers", func(p *Policy) { p.AutoApprovers.Routes["10.9.0.0/16"] = nil }, `autoApprovers.routes["10.9.0.0/16"]`, "no approvers"},
		{"route approver unowned tag", func(p *Policy) { p.AutoApprovers.Routes["10.244.0.0/16"] = []string{"tag:k8s-node", "tag:nope"} }, `autoApprovers.routes["10.244.0.0/16"][1]`, "no tagOwners entry"},
		{"exit node approver undefined group", func(p *Policy) { p.AutoApprovers.ExitNode = []string{"group:x"} }, `autoApprovers.exitNode[0]`, "not defined"},
		{"grant empty src", func(p *Policy) { p.Grants[0].Src = nil }, `grants[0].src`, "src is empty"},
		{"grant empty dst", func(p *Policy) { p.Grants[1].Dst = []string{} }, `grants[1].dst`, "dst is empty"},
		{"grant undefined group", func(p *Policy) { p.Grants[2].Src = []string{"group:devs"} }, `grants[2].src[0]`, `group "group:devs" is not defined`},
		{"grant unowned tag", func(p *Policy) { p.Grants[0].Dst = []string{"tag:db"} }, `grants[0].dst[0]`, `"tag:db" has no tagOwners`},
		{"grant undefined host", func(p *Policy) { p.Grants[1].Dst = []string{"nas"} }, `grants[1].dst[0]`, `host "nas" is not defined`},
		{"grant dst with port", func(p *Policy) { p.Grants[0].Dst = []string{"tag:k8s-node:443"} }, `grants[0].dst[0]`, "carries a port"},
		{"grant dst IP with port", func(p *Policy) { p.Grants[0].Dst = []string{"100.64.0.1:443"} }, `grants[0].dst[0]`, "carries a port"},
		{"grant src self", func(p *Policy) { p.Grants[0].Src = []string{"autogroup:self"} }, `grants[0].src[0]`, "cannot be a source"},
		{"grant unknown autogroup", func(p *Policy) { p.Grants[0].Src = []string{"autogroup:everyone"} }, `grants[0].src[0]`, "unknown autogroup"},
		{"grant garbage selector", func(p *Policy) { p.Grants[0].Src = []string{"not a thing!"} }, `grants[0].src[0]`, "is not a user, group"},
		{"grant ipset", func(p *Policy) { p.Grants[0].Src = []string{"ipset:lan"} }, `grants[0].src[0]`, "ipsets"},
		{"grant no ip no app", func(p *Policy) { p.Grants[0].IP = nil }, `grants[0]`, "neither ip nor app"},
		{"grant ip bad proto", func(p *Policy) { p.Grants[0].IP = []string{"tcp:22", "tpc:443"} }, `grants[0].ip[1]`, "unknown protocol"},
		{"grant ip backwards range", func(p *Policy) { p.Grants[0].IP = []string{"udp:100-1"} }, `grants[0].ip[0]`, "runs backwards"},
		{"grant ip port too big", func(p *Policy) { p.Grants[0].IP = []string{"70000"} }, `grants[0].ip[0]`, "bad port"},
		{"grant ip proto without ports", func(p *Policy) { p.Grants[0].IP = []string{"icmp"} }, `grants[0].ip[0]`, "without ports"},
		{"grant ip icmp with port", func(p *Policy) { p.Grants[0].IP = []string{"icmp:8"} }, `grants[0].ip[0]`, "has no ports"},
		{"grant via not tag", func(p *Policy) { p.Grants[0].Via = []string{"group:admins"} }, `grants[0].via[0]`, "cannot be a via router"},
		{"acl action", func(p *Policy) { p.ACLs[0].Action = "deny" }, `acls[0].action`, `is not "accept"`},
		{"acl proto", func(p *Policy) { p.ACLs[0].Proto = "quic" }, `acls[0].proto`, "unknown protocol"},
		{"acl proto number out of range", func(p *Policy) { p.ACLs[0].Proto = "300" }, `acls[0].proto`, "unknown protocol"},
		{"acl empty src", func(p *Policy) { p.ACLs[1].Src = nil }, `acls[1].src`, "src is empty"},
		{"acl empty dst", func(p *Policy) { p.ACLs[1].Dst = nil }, `acls[1].dst`, "dst is empty"},
		{"acl dst without port", func(p *Policy) { p.ACLs[0].Dst = []string{"tag:aws"} }, `acls[0].dst[0]`, "has no port"},
		{"acl dst bad range", func(p *Policy) { p.ACLs[0].Dst = []string{"tag:aws:90-80"} }, `acls[0].dst[0]`, "runs backwards"},
		{"acl dst bad port", func(p *Policy) { p.ACLs[0].Dst = []string{"tag:aws:65536"} }, `acls[0].dst[0]`, "bad port"},
		{"acl dst undefined host", func(p *Policy) { p.ACLs[0].Dst = []string{"nas:22"} }, `acls[0].dst[0]`, `host "nas" is not defined`},
		{"acl portless proto with ports", func(p *Policy) { p.ACLs[1].Dst = []string{"*:22"} }, `acls[1].dst[0]`, "has no ports"},
		{"ssh action", func(p *Policy) { p.SSH[0].Action = "allow" }, `ssh[0].action`, "is not accept or check"},
		{"ssh checkPeriod on accept", func(p *Policy) { p.SSH[1].CheckPeriod = "1h" }, `ssh[1].checkPeriod`, "only valid with action"},
		{"ssh checkPeriod bad", func(p *Policy) { p.SSH[0].CheckPeriod = "a day" }, `ssh[0].checkPeriod`, "not a duration"},
		{"ssh dst star", func(p *Policy) { p.SSH[0].Dst = []string{"*"} }, `ssh[0].dst[0]`, "cannot be an SSH destination"},
		{"ssh dst host", func(p *Policy) { p.SSH[0].Dst = []string{"router"} }, `ssh[0].dst[0]`, "cannot be an SSH destination"},
		{"ssh dst other user", func(p *Policy) { p.SSH[0].Dst = []string{"bob@example.com"} }, `ssh[0].dst[0]`, "only when the source is the same user"},
		{"ssh src IP", func(p *Policy) { p.SSH[0].Src = []string{"100.64.0.1"} }, `ssh[0].src[0]`, "cannot be an SSH source"},
		{"ssh empty users", func(p *Policy) { p.SSH[0].Users = nil }, `ssh[0].users`, "users is empty"},
		{"ssh bad user", func(p *Policy) { p.SSH[0].Users = []string{"root", "Bad User"} }, `ssh[0].users[1]`, "not a login user"},
		{"ssh empty src", func(p *Policy) { p.SSH[1].Src = nil }, `ssh[1].src`, "src is empty"},
		{"test no src", func(p *Policy) { p.Tests[0].Src = "" }, `tests[0].src`, "no src"},
		{"test src undefined group", func(p *Policy) { p.Tests[0].Src = "group:nope" }, `tests[0].src`, "not defined"},
		{"test src star", func(p *Policy) { p.Tests[0].Src = "*" }, `tests[0].src`, "cannot be a test source"},
		{"test proto", func(p *Policy) { p.Tests[1].Proto = "tcpp" }, `tests[1].proto`, "unknown protocol"},
		{"test nothing asserted", func(p *Policy) { p.Tests[1].Accept = nil }, `tests[1]`, "neither accept nor deny"},
		{"test accept without port", func(p *Policy) { p.Tests[0].Accept = []string{"tag:aws"} }, `tests[0].accept[0]`, "has no port"},
		{"test accept range", func(p *Policy) { p.Tests[0].Accept = []string{"tag:aws:1-2"} }, `tests[0].accept[0]`, "bad port"},
		{"test deny unowned tag", func(p *Policy) { p.Tests[0].Deny = []string{"router:22", "tag:db:22"} }, `tests[0].deny[1]`, "no tagOwners"},
		{"test deny undefined host", func(p *Policy) { p.Tests[0].Deny = []string{"nas:22"} }, `tests[0].deny[0]`, "not defined"},
		{"sshTest no dst", func(p *Policy) { p.SSHTests[0].Dst = nil }, `sshTests[0].dst`, "dst is empty"},
		{"sshTest undefined src", func(p *Policy) { p.SSHTests[0].Src = "group:x" }, `sshTests[0].src`, "not defined"},
		{"sshTest nothing asserted", func(p *Policy) { p.SSHTests[0].Check = nil }, `sshTests[0]`, "no accept, check or deny"},
		{"sshTest bad user", func(p *Policy) { p.SSHTests[0].Deny = []string{"a b"} }, `sshTests[0].deny[0]`, "not a login user"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := validPolicy()
			tc.mutate(&p)
			issues := Validate(&p)
			for _, is := range issues {
				if is.Path == tc.path && strings.Contains(is.Msg, tc.msg) {
					if is.Hint == "" {
						t.Errorf("issue %v has no hint", is)
					}
					return
				}
			}
			t.Errorf("no issue at %s containing %q; got:\n%v", tc.path, tc.msg, issues)
		})
	}
}

// TestValidateReportsAll checks that every problem is reported, not the first.
func TestValidateReportsAll(t *testing.T) {
	p := validPolicy()
	p.Grants[0].Src = []string{"group:a", "group:b"}
	p.ACLs[0].Action = "drop"
	p.Tests[0].Accept = []string{"tag:q:1"}
	got := map[string]bool{}
	for _, is := range Validate(&p) {
		got[is.Path] = true
	}
	for _, want := range []string{"grants[0].src[0]", "grants[0].src[1]", "acls[0].action", "tests[0].accept[0]"} {
		if !got[want] {
			t.Errorf("missing issue at %s; got %v", want, got)
		}
	}
	if len(got) != 4 {
		t.Errorf("got %d issue paths, want 4: %v", len(got), got)
	}
}
