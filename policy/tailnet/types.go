// Package tailnet models a Tailscale policy file (the "ACL" document) in
// Tailscale's own vocabulary, renders it as stable HuJSON, and evaluates its
// tests offline. It does no I/O.
package tailnet

// Policy is a Tailscale policy document. JSON keys are Tailscale's, so the
// YAML form accepts what Tailscale's documentation shows.
type Policy struct {
	Groups        map[string][]string `json:"groups,omitempty" yaml:"groups,omitempty"`
	TagOwners     map[string][]string `json:"tagOwners,omitempty" yaml:"tagOwners,omitempty"`
	Hosts         map[string]string   `json:"hosts,omitempty" yaml:"hosts,omitempty"`
	Grants        []Grant             `json:"grants,omitempty" yaml:"grants,omitempty"`
	ACLs          []ACL               `json:"acls,omitempty" yaml:"acls,omitempty"`
	SSH           []SSHRule           `json:"ssh,omitempty" yaml:"ssh,omitempty"`
	Tests         []Test              `json:"tests,omitempty" yaml:"tests,omitempty"`
	SSHTests      []SSHTest           `json:"sshTests,omitempty" yaml:"sshTests,omitempty"`
	AutoApprovers *AutoApprovers      `json:"autoApprovers,omitempty" yaml:"autoApprovers,omitempty"`
}

// Grant is a Tailscale grant: src may reach dst on the listed ip specs
// ("*", "tcp:443", "udp:41641", "icmp:*", "6443", "1000-2000").
type Grant struct {
	Src []string       `json:"src" yaml:"src"`
	Dst []string       `json:"dst" yaml:"dst"`
	IP  []string       `json:"ip,omitempty" yaml:"ip,omitempty"`
	App map[string]any `json:"app,omitempty" yaml:"app,omitempty"`
	Via []string       `json:"via,omitempty" yaml:"via,omitempty"`
}

// ACL is a legacy Tailscale ACL rule. Dst entries are "host:ports".
type ACL struct {
	Action string   `json:"action" yaml:"action"`
	Src    []string `json:"src" yaml:"src"`
	Proto  string   `json:"proto,omitempty" yaml:"proto,omitempty"`
	Dst    []string `json:"dst" yaml:"dst"`
}

// SSHRule is a Tailscale SSH rule.
type SSHRule struct {
	Action      string   `json:"action" yaml:"action"`
	Src         []string `json:"src" yaml:"src"`
	Dst         []string `json:"dst" yaml:"dst"`
	Users       []string `json:"users" yaml:"users"`
	CheckPeriod string   `json:"checkPeriod,omitempty" yaml:"checkPeriod,omitempty"`
}

// Test asserts that src can (accept) or cannot (deny) reach destinations
// written "host:port", optionally for one protocol.
type Test struct {
	Src    string   `json:"src" yaml:"src"`
	Proto  string   `json:"proto,omitempty" yaml:"proto,omitempty"`
	Accept []string `json:"accept,omitempty" yaml:"accept,omitempty"`
	Deny   []string `json:"deny,omitempty" yaml:"deny,omitempty"`
}

// SSHTest asserts who may SSH to a destination as which users.
type SSHTest struct {
	Src    string   `json:"src" yaml:"src"`
	Dst    []string `json:"dst" yaml:"dst"`
	Accept []string `json:"accept,omitempty" yaml:"accept,omitempty"`
	Check  []string `json:"check,omitempty" yaml:"check,omitempty"`
	Deny   []string `json:"deny,omitempty" yaml:"deny,omitempty"`
}

// AutoApprovers lets the control server approve advertised routes and exit
// nodes without a manual step.
type AutoApprovers struct {
	Routes   map[string][]string `json:"routes,omitempty" yaml:"routes,omitempty"`
	ExitNode []string            `json:"exitNode,omitempty" yaml:"exitNode,omitempty"`
}
