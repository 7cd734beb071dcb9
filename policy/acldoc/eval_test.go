package acldoc

import (
	"strings"
	"testing"
)

func evalPolicy() Policy {
	return Policy{
		Groups: map[string][]string{
			"group:admins": {"alice@example.com", "bob@example.com"},
			"group:dev":    {"carol@example.com"},
			"group:empty":  {},
		},
		TagOwners: map[string][]string{"tag:k8s-node": {"autogroup:admin"}, "tag:db": {"autogroup:admin"}, "tag:web": {"autogroup:admin"}},
		Hosts:     map[string]string{"pods": "10.244.0.0/16", "lan": "192.168.0.0/24", "nas": "192.168.0.10"},
		AutoApprovers: &AutoApprovers{
			Routes: map[string][]string{"10.244.0.0/16": {"tag:k8s-node"}},
		},
		Grants: []Grant{
			{Src: []string{"group:admins"}, Dst: []string{"tag:db"}, IP: []string{"tcp:5432"}},
			{Src: []string{"autogroup:member"}, Dst: []string{"tag:web"}, IP: []string{"443"}},
			{Src: []string{"pods"}, Dst: []string{"pods"}, IP: []string{"*"}},
			{Src: []string{"100.64.0.0/10"}, Dst: []string{"nas"}, IP: []string{"tcp:445"}},
			{Src: []string{"autogroup:member"}, Dst: []string{"autogroup:self"}, IP: []string{"tcp:22"}},
			{Src: []string{"*"}, Dst: []string{"tag:k8s-node"}, IP: []string{"icmp:*"}},
			{Src: []string{"carol@example.com"}, Dst: []string{"10.244.1.0/24"}, IP: []string{"udp:53"}},
			{Src: []string{"group:admins"}, Dst: []string{"tag:web"}, App: map[string]any{"example.com/cap/admin": []any{}}},
			{Src: []string{"tag:web"}, Dst: []string{"*"}, IP: []string{"tcp:8080"}},
			{Src: []string{"group:empty"}, Dst: []string{"tag:db"}, IP: []string{"tcp:1"}},
			{Src: []string{"autogroup:tagged"}, Dst: []string{"autogroup:internet"}, IP: []string{"*"}},
		},
		ACLs: []ACL{
			{Action: "accept", Src: []string{"group:dev"}, Dst: []string{"tag:web:80,443"}},
			{Action: "accept", Src: []string{"lan"}, Proto: "tcp", Dst: []string{"tag:db:5432"}},
			{Action: "accept", Src: []string{"tag:db"}, Proto: "udp", Dst: []string{"tag:k8s-node:1000-2000"}},
		},
		SSH: []SSHRule{
			{Action: "check", Src: []string{"group:admins"}, Dst: []string{"tag:k8s-node"}, Users: []string{"root"}},
			{Action: "accept", Src: []string{"group:admins"}, Dst: []string{"tag:k8s-node"}, Users: []string{"autogroup:nonroot"}},
			{Action: "accept", Src: []string{"autogroup:member"}, Dst: []string{"autogroup:self"}, Users: []string{"localpart:*@example.com"}},
			{Action: "accept", Src: []string{"tag:web"}, Dst: []string{"tag:db"}, Users: []string{"deploy"}},
		},
	}
}

func TestRunTests(t *testing.T) {
	tests := []struct {
		name, src, proto, dst string
		got                   string // expected evaluation
		by                    string // rule expected in Reason, if allowed
	}{
		{"user via group grant", "alice@example.com", "", "tag:db:5432", "accept", "grants[0]"},
		{"user other port", "alice@example.com", "", "tag:db:5433", "deny", ""},
		{"user wrong proto", "alice@example.com", "udp", "tag:db:5432", "deny", ""},
		{"group all members", "group:admins", "", "tag:db:5432", "accept", "grants[0]"},
		{"group not in rule", "group:dev", "", "tag:db:5432", "deny", ""},
		{"autogroup:member bare port tcp", "group:admins", "tcp", "tag:web:443", "accept", "grants[1]"},
		{"bare port admits udp", "bob@example.com", "udp", "tag:web:443", "accept", "grants[1]"},
		{"icmp ignores ports", "bob@example.com", "icmp", "tag:web:1", "accept", "grants[1]"},
		{"bare port excludes sctp", "bob@example.com", "sctp", "tag:web:443", "deny", ""},
		{"tag is not a member", "tag:k8s-node", "", "tag:web:443", "deny", ""},
		{"pod IP to pods alias", "10.244.1.5", "", "pods:9999", "accept", "grants[2]"},
		{"pod IP to pod IP", "10.244.1.5", "udp", "10.244.2.7:80", "accept", "grants[2]"},
		{"pods alias to pod IP", "pods", "", "10.244.2.7:80", "accept", "grants[2]"},
		{"outside pods", "10.245.0.1", "", "pods:80", "deny", ""},
		{"CIDR src contains IP", "100.64.0.7", "", "nas:445", "accept", "grants[3]"},
		{"host dst by IP", "100.64.0.7", "", "192.168.0.10:445", "accept", "grants[3]"},
		{"bigger dst not contained", "100.64.0.7", "", "lan:445", "deny", ""},
		{"self", "alice@example.com", "", "alice@example.com:22", "accept", "grants[4]"},
		{"self not other user", "alice@example.com", "", "bob@example.com:22", "deny", ""},
		{"star src user", "bob@example.com", "icmp", "tag:k8s-node:0", "accept", "grants[5]"},
		{"star src tailscale IP", "100.64.0.7", "icmp", "tag:k8s-node:0", "accept", "grants[5]"},
		{"star src approved route", "10.244.3.3", "icmp", "tag:k8s-node:0", "accept", "grants[5]"},
		{"star src outside tailnet", "8.8.8.8", "icmp", "tag:k8s-node:0", "deny", ""},
		{"user to narrower CIDR", "carol@example.com", "udp", "10.244.1.9:53", "accept", "grants[6]"},
		{"user to wider host", "carol@example.com", "udp", "pods:53", "deny", ""},
		{"app-only grant gives no network", "alice@example.com", "", "tag:web:9000", "deny", ""},
		{"star dst covers tags", "tag:web", "", "tag:db:8080", "accept", "grants[8]"},
		{"star dst covers tailscale IP", "tag:web", "", "100.100.1.1:8080", "accept", "grants[8]"},
		{"star dst covers approved route", "tag:web", "", "pods:8080", "accept", "grants[8]"},
		{"star dst not unapproved LAN", "tag:web", "", "192.168.0.10:8080", "deny", ""},
		{"star dst token", "tag:web", "", "*:8080", "accept", "grants[8]"},
		{"empty group by name", "group:empty", "", "tag:db:1", "accept", "grants[9]"},
		{"internet by name only", "tag:web", "", "autogroup:internet:443", "accept", "grants[10]"},
		{"internet not for users", "alice@example.com", "", "autogroup:internet:443", "deny", ""},
		{"acl group ports list", "group:dev", "", "tag:web:80", "accept", "acls[0]"},
		{"acl default protos udp", "carol@example.com", "udp", "tag:web:80", "accept", "acls[0]"},
		{"acl port not listed", "carol@example.com", "", "tag:web:8080", "deny", ""},
		{"acl host src", "192.168.0.5", "", "tag:db:5432", "accept", "acls[1]"},
		{"acl proto tcp only", "192.168.0.5", "udp", "tag:db:5432", "deny", ""},
		{"acl port range udp", "tag:db", "udp", "tag:k8s-node:1500", "accept", "acls[2]"},
		{"acl port range edge", "tag:db", "udp", "tag:k8s-node:2001", "deny", ""},
		{"acl proto mismatch", "tag:db", "tcp", "tag:k8s-node:1500", "deny", ""},
		{"proto by number", "tag:db", "17", "tag:k8s-node:1000", "accept", "acls[2]"},
	}
	p := evalPolicy()
	for _, tc := range tests {
		test := Test{Src: tc.src, Proto: tc.proto}
		if tc.got == "accept" {
			test.Accept = []string{tc.dst}
		} else {
			test.Deny = []string{tc.dst}
		}
		p.Tests = append(p.Tests, test)
	}
	if issues := Validate(&p); len(issues) != 0 {
		t.Fatalf("fixture has issues: %v", issues)
	}
	res := RunTests(&p)
	if len(res) != len(tests) {
		t.Fatalf("got %d results, want %d", len(res), len(tests))
	}
	for i, tc := range tests {
		r := res[i]
		if r.Index != i || r.Src != tc.src || r.Dst != tc.dst || r.Want != tc.got {
			t.Errorf("%s: result %+v does not describe the test", tc.name, r)
		}
		if !r.OK || r.Got != tc.got {
			t.Errorf("%s: %s -> %s (%q): got %s ok=%v, want %s; reason: %s", tc.name, tc.src, tc.dst, tc.proto, r.Got, r.OK, tc.got, r.Reason)
		}
		if tc.by != "" && !strings.Contains(r.Reason, tc.by) {
			t.Errorf("%s: reason %q does not name %s", tc.name, r.Reason, tc.by)
		}
	}
}

// TestRunTestsFailures checks that wrong expectations and broken tests fail.
func TestRunTestsFailures(t *testing.T) {
	p := evalPolicy()
	p.Tests = []Test{
		{Src: "alice@example.com", Accept: []string{"tag:db:22"}, Deny: []string{"tag:db:5432"}},
		// alice may reach herself but not bob: mixed, so neither holds.
		{Src: "group:admins", Accept: []string{"group:admins:22"}, Deny: []string{"group:admins:22"}},
		{Src: "group:nope", Accept: []string{"tag:db:5432"}},
		{Src: "alice@example.com", Accept: []string{"tag:db", "nowhere:1", "tag:db:1-2"}},
		{Src: "alice@example.com", Proto: "bogus", Accept: []string{"tag:db:5432"}},
	}
	res := RunTests(&p)
	want := []struct {
		path, got string
		reason    string
	}{
		{"tests[0].accept[0]", "deny", "no grant or ACL allows alice@example.com -> tag:db:22"},
		{"tests[0].deny[0]", "accept", "allowed by grants[0]"},
		{"tests[1].accept[0]", "deny", "partly denied"},
		{"tests[1].deny[0]", "accept", "partly allowed"},
		{"tests[2].accept[0]", "", "invalid src"},
		{"tests[3].accept[0]", "", "want host:port"},
		{"tests[3].accept[1]", "", "not defined"},
		{"tests[3].accept[2]", "", "want one port"},
		{"tests[4].accept[0]", "", "invalid proto"},
	}
	if len(res) != len(want) {
		t.Fatalf("got %d results, want %d: %+v", len(res), len(want), res)
	}
	for i, w := range want {
		r := res[i]
		if r.OK || r.Path != w.path || r.Got != w.got || !strings.Contains(r.Reason, w.reason) {
			t.Errorf("result %d = %+v; want failing %s got=%q reason~%q", i, r, w.path, w.got, w.reason)
		}
	}
}

func TestRunSSHTests(t *testing.T) {
	p := evalPolicy()
	p.SSHTests = []SSHTest{
		{Src: "alice@example.com", Dst: []string{"tag:k8s-node"}, Check: []string{"root"}, Accept: []string{"ubuntu"}},
		{Src: "group:admins", Dst: []string{"tag:k8s-node"}, Check: []string{"root"}},
		{Src: "carol@example.com", Dst: []string{"tag:k8s-node", "tag:db"}, Deny: []string{"ubuntu", "root"}},
		{Src: "carol@example.com", Dst: []string{"carol@example.com"}, Accept: []string{"carol"}, Deny: []string{"root", "alice"}},
		{Src: "tag:web", Dst: []string{"tag:db"}, Accept: []string{"deploy"}, Deny: []string{"root"}},
		{Src: "alice@example.com", Dst: []string{"bob@example.com"}, Deny: []string{"alice"}},
	}
	res := RunTests(&p)
	if len(res) != 13 {
		t.Fatalf("got %d results, want 13: %+v", len(res), res)
	}
	for _, r := range res {
		if !r.OK || r.Proto != "ssh" {
			t.Errorf("%s %s -> %s: want %s got %s: %s", r.Path, r.Src, r.Dst, r.Want, r.Got, r.Reason)
		}
	}
	// Swap the expectation: a check rule is not an accept.
	p.SSHTests = []SSHTest{{Src: "alice@example.com", Dst: []string{"tag:k8s-node"}, Accept: []string{"root"}, Deny: []string{"ubuntu"}}}
	res = RunTests(&p)
	if len(res) != 2 || res[0].OK || res[0].Got != "check" || res[1].OK || res[1].Got != "accept" || !strings.Contains(res[1].Reason, "ssh[1]") {
		t.Errorf("swapped expectations: %+v", res)
	}
}

func TestSemantics(t *testing.T) {
	s := Semantics()
	for _, w := range []string{"autogroup:member", "via", "posture", "proto", "autoApprovers", "first match", "containing"} {
		if !strings.Contains(s, w) {
			t.Errorf("Semantics does not mention %q", w)
		}
	}
}
