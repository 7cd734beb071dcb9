// Package desired holds the compiled, validated desired state of the
// cluster network: plain data that the reconcilers consume. It is produced by
// policy.Compile and imports nothing but the standard library.
package desired

import (
	"fmt"
	"net/netip"
	"time"
)

// State is the whole compiled policy.
type State struct {
	// Name is metadata.name of the policy; Source the file it came from.
	Name   string `json:"name"`
	Source string `json:"source,omitempty"`
	// Digest is a hash of the compiled state, stable across runs, used to
	// tell whether anything changed.
	Digest string `json:"digest"`

	Networks Networks `json:"networks"`
	Overlay  Link     `json:"overlay"`
	Routing  Routing  `json:"routing"`
	// PodMTU is the MTU pods (veths) must use: the overlay MTU less the
	// encapsulation overhead of the pools.
	PodMTU int `json:"podMTU"`

	Nodes   []Node  `json:"nodes"` // sorted by name
	Calico  Calico  `json:"calico"`
	Tailnet Tailnet `json:"tailnet"`
}

// Networks are the cluster address ranges.
type Networks struct {
	Pods     netip.Prefix `json:"pods"`
	Services netip.Prefix `json:"services"`
	Overlay  netip.Prefix `json:"overlay"`
	LANs     []LAN        `json:"lans,omitempty"`
}

// LAN is a site's local network.
type LAN struct {
	Name      string       `json:"name"`
	Prefix    netip.Prefix `json:"prefix"`
	Site      string       `json:"site"`
	Interface string       `json:"interface,omitempty"` // empty: find by address
	MTU       int          `json:"mtu"`
}

// Link is a device and its MTU.
type Link struct {
	Interface string `json:"interface"`
	MTU       int    `json:"mtu"`
}

// Routing is how netd marks what it owns in the kernel.
type Routing struct {
	Protocol     int `json:"protocol"`     // route protocol number on every netd route
	Table        int `json:"table"`        // netd's own table
	RulePriority int `json:"rulePriority"` // "lookup Table" rule, ahead of tailscaled's 5270
}

// Node is one cluster node as every reconciler sees it.
type Node struct {
	Name        string            `json:"name"`
	Site        string            `json:"site"`
	Role        string            `json:"role"` // "control-plane" or "worker"
	OverlayAddr netip.Addr        `json:"overlayAddr"`
	LANAddr     netip.Addr        `json:"lanAddr,omitzero"` // invalid if none
	LAN         string            `json:"lan,omitempty"`    // name of its LAN, if any
	PodCIDRs    []netip.Prefix    `json:"podCIDRs,omitempty"`
	Labels      map[string]string `json:"labels,omitempty"`
	Tailscale   NodeTailscale     `json:"tailscale"`
	// BGP is this node's speaker configuration.
	BGP Speaker `json:"bgp"`
}

// NodeTailscale is a node's tailnet identity.
type NodeTailscale struct {
	Hostname string   `json:"hostname"`
	Tags     []string `json:"tags,omitempty"`
}

// Speaker is the BGP configuration of one node.
type Speaker struct {
	ASN      uint32     `json:"asn"`
	RouterID netip.Addr `json:"routerID"`
	// ListenAddr is the only address the speaker listens on (the overlay
	// address; never 0.0.0.0).
	ListenAddr netip.Addr `json:"listenAddr"`
	ListenPort int        `json:"listenPort"`
	// RouteReflector is true if this node reflects for its clients.
	RouteReflector  bool            `json:"routeReflector,omitempty"`
	ClusterID       netip.Addr      `json:"clusterID,omitzero"`
	Timers          Timers          `json:"timers"`
	GracefulRestart GracefulRestart `json:"gracefulRestart"`
	// BFD says whether the nodes run BFD with their peers (single hop, UDP
	// 3784), which the generated tailnet policy then allows.
	BFD bool `json:"bfd"`
	// PodCIDR bounds everything a cluster peer may announce.
	PodCIDR netip.Prefix `json:"podCIDR"`
	// Reserved are the ranges no route learned from an external peer may
	// reach (Networks.Reserved), except its Import.Exceptions.
	Reserved []ReservedRange `json:"reserved,omitempty"`
	Peers    []Peer          `json:"peers"` // sorted by name
}

// Timers are session timers.
type Timers struct {
	HoldTime     time.Duration `json:"holdTime"`
	Keepalive    time.Duration `json:"keepalive"`
	ConnectRetry time.Duration `json:"connectRetry"`
}

// GracefulRestart is RFC 4724 configuration.
type GracefulRestart struct {
	Enabled       bool          `json:"enabled"`
	RestartTime   time.Duration `json:"restartTime"`
	StalePathTime time.Duration `json:"stalePathTime"`
}

// PeerKind says whether a peer is another cluster node or an external
// speaker (a home router, say).
type PeerKind string

// Peer kinds.
const (
	PeerNode     PeerKind = "node"
	PeerExternal PeerKind = "external"
)

// Peer is one BGP neighbor of a node.
type Peer struct {
	Name    string     `json:"name"`
	Kind    PeerKind   `json:"kind"`
	Address netip.Addr `json:"address"` // the peer's overlay address (node) or its address (external)
	ASN     uint32     `json:"asn"`
	// RouteReflectorClient: this node reflects routes to the peer.
	RouteReflectorClient bool `json:"routeReflectorClient,omitempty"`
	// Site and LANAddr of a node peer: used to choose the direct LAN path.
	Site    string     `json:"site,omitempty"`
	LANAddr netip.Addr `json:"lanAddr,omitzero"`
	// Export lists the prefixes this node may announce to the peer; a
	// prefix is announced only if it is also one of the node's own blocks
	// (ExportOwnBlocks) or listed here explicitly.
	ExportOwnBlocks bool           `json:"exportOwnBlocks"`
	Export          []netip.Prefix `json:"export,omitempty"`
	// Import is what the node accepts from the peer.
	Import Import `json:"import"`
	// PasswordFile holds the TCP MD5 password, if any.
	PasswordFile string `json:"passwordFile,omitempty"`
}

// Import is an import filter: a path is accepted only if its prefix matches
// one of the ranges, and at most MaxPrefixes are accepted from the peer.
type Import struct {
	Ranges      []PrefixRange `json:"ranges,omitempty"`
	MaxPrefixes int           `json:"maxPrefixes"`
	// Exceptions are exact prefixes inside a reserved range that an
	// external peer may announce all the same (the policy's
	// importReserved).
	Exceptions []netip.Prefix `json:"exceptions,omitempty"`
}

// PrefixRange matches prefixes inside Prefix whose length lies in
// [MinLen, MaxLen].
type PrefixRange struct {
	Prefix netip.Prefix `json:"prefix"`
	MinLen int          `json:"minLen"`
	MaxLen int          `json:"maxLen"`
}

// Contains reports whether p falls in the range.
func (r PrefixRange) Contains(p netip.Prefix) bool {
	return r.Prefix.Bits() <= p.Bits() && r.Prefix.Contains(p.Addr()) &&
		p.Bits() >= r.MinLen && p.Bits() <= r.MaxLen
}

// Allows reports whether the import filter accepts p.
func (im Import) Allows(p netip.Prefix) bool {
	for _, r := range im.Ranges {
		if r.Contains(p) {
			return true
		}
	}
	return false
}

// ReservedRange is address space that a route learned from an external
// peer must not reach: netd's table is looked up before the main table, so
// such a route would capture the traffic of the cluster (its pods,
// services, node addresses, LAN hosts) or, as a default route, all of it.
type ReservedRange struct {
	Name   string       `json:"name"` // "pod CIDR", "LAN home-lan", ...
	Prefix netip.Prefix `json:"prefix"`
}

// DefaultRouteName names the reserved default route.
const DefaultRouteName = "default route"

// Reserved returns the reserved ranges of the cluster: the pod, service
// and overlay ranges, every LAN, and the default route.
func (n Networks) Reserved() []ReservedRange {
	var out []ReservedRange
	add := func(name string, p netip.Prefix) {
		if p.IsValid() {
			out = append(out, ReservedRange{Name: name, Prefix: p.Masked()})
		}
	}
	add("pod CIDR", n.Pods)
	add("service CIDR", n.Services)
	add("overlay", n.Overlay)
	for _, l := range n.LANs {
		add("LAN "+l.Name, l.Prefix)
	}
	add(DefaultRouteName, netip.PrefixFrom(netip.IPv4Unspecified(), 0))
	return out
}

// Reaches reports whether a route for p would reach r: p covers r's
// prefix or lies inside it. The default route is reached only by
// 0.0.0.0/0 itself.
func (r ReservedRange) Reaches(p netip.Prefix) bool {
	if r.Prefix.Bits() == 0 {
		return p.Bits() == 0
	}
	return p.Overlaps(r.Prefix)
}

// ReachedBy reports whether some prefix in pr reaches r.
func (r ReservedRange) ReachedBy(pr PrefixRange) bool {
	if r.Prefix.Bits() == 0 {
		return pr.Prefix.Bits() == 0 && pr.MinLen == 0
	}
	// A range whose prefix contains r's holds either a prefix covering it
	// or one inside it, whatever its lengths; one inside r holds only
	// prefixes inside it.
	return pr.MinLen <= pr.MaxLen && pr.Prefix.Overlaps(r.Prefix)
}

// Calico is the set of Calico objects the policy asks for.
type Calico struct {
	IPPools []IPPool `json:"ipPools"`
	// StrictAffinity goes into the default IPAMConfiguration.
	StrictAffinity bool `json:"strictAffinity"`
	// Felix settings.
	Felix Felix `json:"felix"`
}

// IPPool is a Calico IPPool.
type IPPool struct {
	Name          string       `json:"name"`
	CIDR          netip.Prefix `json:"cidr"`
	BlockSize     int          `json:"blockSize"`
	NodeSelector  string       `json:"nodeSelector"`
	NATOutgoing   bool         `json:"natOutgoing"`
	Encapsulation string       `json:"encapsulation"` // "None", "VXLAN" or "VXLANCrossSubnet"
	Disabled      bool         `json:"disabled"`
	// Nodes are the nodes the selector matches.
	Nodes []string `json:"nodes"`
}

// Felix is the FelixConfiguration the policy needs.
type Felix struct {
	// MTUIfacePattern makes Felix's MTU detection look at the overlay.
	MTUIfacePattern string `json:"mtuIfacePattern"`
	VethMTU         int    `json:"vethMTU"`
	VXLANMTU        int    `json:"vxlanMTU,omitempty"`
	// IptablesMarkMask avoids Tailscale's fwmark bits (0xff0000).
	IptablesMarkMask uint32 `json:"iptablesMarkMask"`
	// InterfaceExclude keeps the overlay out of Calico's autodetection.
	InterfaceExclude string `json:"interfaceExclude"`
}

// Tailnet is the compiled tailnet policy: the document in the form each
// kind of control server takes, each with the offline verdict on it, so
// that the writer (package acl) only does I/O and never parses or
// evaluates a policy itself.
type Tailnet struct {
	// Tailscale is the policy document as Tailscale takes it (HuJSON, with
	// a header saying it is generated).
	Tailscale TailnetDocument `json:"-"`
	// Headscale is the same policy for headscale 0.26, which silently
	// ignores grants and tests: every grant is rewritten as equivalent
	// acls, and the tests are evaluated offline against that form.
	Headscale TailnetDocument `json:"-"`
	// NodeTag marks cluster nodes.
	NodeTag string `json:"nodeTag"`
	// ApprovedRoutes maps each auto-approved route to its approvers.
	ApprovedRoutes map[netip.Prefix][]string `json:"approvedRoutes,omitempty"`
	// Sync says which netd writes the policy and what it may overwrite.
	Sync TailnetSync `json:"sync"`
}

// TailnetSync is how the netd daemon keeps the tailnet policy in sync.
type TailnetSync struct {
	// Writer is the node whose netd writes without Kubernetes ("" = none;
	// with Kubernetes the Lease holder writes).
	Writer string `json:"writer,omitempty"`
	// Exclusive: netd owns the tailnet policy outright and overwrites an
	// edit made outside netd (after reporting it); otherwise such an edit
	// is reported and left alone.
	Exclusive bool `json:"exclusive,omitempty"`
	// Interval is the period of the writer's re-check of the live policy.
	Interval time.Duration `json:"interval"`
}

// TailnetDocument is one form of the tailnet policy document and what the
// offline evaluator found in it.
type TailnetDocument struct {
	// HuJSON is the document; empty if Err is set.
	HuJSON []byte
	// Err says why the policy cannot be written in this form (headscale
	// cannot express a grant with via or app).
	Err string
	// Issues are what the validator rejects in HuJSON, one line each
	// ("grants[2].src[0]: what is wrong (hint)").
	Issues []string
	// Tests holds one result per assertion of the document's tests and
	// sshTests, evaluated offline.
	Tests []TailnetTest
}

// Failed returns the assertions that do not hold.
func (d *TailnetDocument) Failed() []TailnetTest {
	var out []TailnetTest
	for _, t := range d.Tests {
		if !t.OK {
			out = append(out, t)
		}
	}
	return out
}

// TailnetTest is the outcome of one assertion of a test: one destination of
// an accept or deny list (tests), or one destination and login of an SSH
// test (sshTests).
type TailnetTest struct {
	Path  string // e.g. tests[0].accept[1] or sshTests[0].check[0]
	Src   string
	Dst   string // "host:port"; for SSH "user@host"
	Proto string // "tcp", "udp", ...; "ssh" for sshTests
	Want  string // "accept" or "deny" ("check" too for SSH)
	Got   string
	OK    bool
	// Reason names the rule that decided, or says why none did.
	Reason string
	// Generated says why netd generated the test; empty if it comes from
	// the policy file.
	Generated string
}

// Node returns the node called name.
func (s *State) Node(name string) (*Node, error) {
	for i := range s.Nodes {
		if s.Nodes[i].Name == name {
			return &s.Nodes[i], nil
		}
	}
	return nil, fmt.Errorf("node %q is not in the policy", name)
}

// NodeByOverlay returns the node whose overlay address is a.
func (s *State) NodeByOverlay(a netip.Addr) (*Node, bool) {
	for i := range s.Nodes {
		if s.Nodes[i].OverlayAddr == a {
			return &s.Nodes[i], true
		}
	}
	return nil, false
}

// Owner returns the node whose static pod blocks contain p.
func (s *State) Owner(p netip.Prefix) (*Node, bool) {
	for i := range s.Nodes {
		for _, b := range s.Nodes[i].PodCIDRs {
			if b.Overlaps(p) && b.Bits() <= p.Bits() {
				return &s.Nodes[i], true
			}
		}
	}
	return nil, false
}

// AdvMSS is the TCP MSS to set on a route of the given MTU (IPv4).
func AdvMSS(mtu int) int { return mtu - 40 }
