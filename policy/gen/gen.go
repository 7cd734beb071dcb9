// Package gen generates large, valid policies: N nodes spread over several
// sites (one LAN each), one pod block and overlay address per node, a
// full mesh or route reflectors, and optionally a tailnet section of many
// grants and tests. The compiler's benchmarks and the scale lab
// (`netd lab up --nodes N`) use it, so that what is measured at 1,000
// nodes and what runs at 100 is the same shape of policy.
package gen

import (
	"errors"
	"fmt"
	"net/netip"

	"go.yaml.in/yaml/v4"

	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/acldoc"
)

// Topologies of the generated BGP section.
const (
	FullMesh       = "full-mesh"
	RouteReflector = "route-reflector"
)

// MaxNodes is how many nodes the address plan holds: one /24 pod block
// each in 10.64.0.0/14 (1,024 of them), the last 24 kept for blocks added
// later (ExtraBlock).
const MaxNodes = 1000

// MaxSites is how many sites (one /16 LAN each, 172.16-31) the plan holds.
const MaxSites = 16

// Options say what to generate. The zero value of a field is its default.
type Options struct {
	// Nodes is the number of nodes (1..MaxNodes), named node-0000 on.
	Nodes int
	// Sites spreads the nodes round robin over this many sites, site-0
	// on, each with its own LAN lan-<k> (default 1).
	Sites int
	// Topology is FullMesh or RouteReflector (the default).
	Topology string
	// Reflectors is the number of route reflectors with RouteReflector
	// (default 3, at most Nodes): node-0000 on, so one per site while
	// there are as many sites.
	Reflectors int
	// Rules is the number of tailnet grants (and Rules/5 tests).
	Rules int
	// ExternalPeer adds a top-of-rack router on site-0's LAN that learns
	// every pod block (it does not exist in the lab: leave it out there).
	ExternalPeer bool
}

func (o Options) withDefaults() (Options, error) {
	if o.Sites == 0 {
		o.Sites = 1
	}
	if o.Topology == "" {
		o.Topology = RouteReflector
	}
	if o.Topology == RouteReflector && o.Reflectors == 0 {
		o.Reflectors = min(3, o.Nodes)
	}
	switch {
	case o.Nodes < 1 || o.Nodes > MaxNodes:
		return o, fmt.Errorf("nodes must be 1..%d, not %d", MaxNodes, o.Nodes)
	case o.Sites < 1 || o.Sites > MaxSites:
		return o, fmt.Errorf("sites must be 1..%d, not %d", MaxSites, o.Sites)
	case o.Topology != FullMesh && o.Topology != RouteReflector:
		return o, fmt.Errorf("topology must be %s or %s, not %q", FullMesh, RouteReflector, o.Topology)
	case o.Topology == FullMesh && o.Reflectors != 0:
		return o, errors.New("a full mesh has no route reflectors")
	case o.Reflectors < 0 || o.Reflectors > o.Nodes:
		return o, fmt.Errorf("reflectors must be 1..%d (the nodes), not %d", o.Nodes, o.Reflectors)
	case o.Rules < 0:
		return o, fmt.Errorf("rules must not be negative, not %d", o.Rules)
	}
	return o, nil
}

// NodeName is the name of node i.
func NodeName(i int) string { return fmt.Sprintf("node-%04d", i) }

// Block is the pod block of node i.
func Block(i int) netip.Prefix {
	return netip.MustParsePrefix(fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256))
}

// ExtraBlock is the k-th block beyond the nodes' own (k < 1024-MaxNodes),
// for a policy change that gives a node a second block.
func ExtraBlock(k int) netip.Prefix { return Block(1023 - k) }

// Policy generates the policy file.
func Policy(o Options) (*policy.File, error) {
	o, err := o.withDefaults()
	if err != nil {
		return nil, err
	}
	n := o.Nodes
	f := &policy.File{APIVersion: policy.APIVersion, Kind: policy.Kind, Metadata: policy.Metadata{Name: fmt.Sprintf("scale-%d", n)}}
	s := &f.Spec
	s.Networks = policy.Networks{Pods: "10.64.0.0/14", Services: "10.96.0.0/12", Overlay: "100.64.0.0/10"}
	for k := range o.Sites {
		s.Networks.LANs = append(s.Networks.LANs, policy.LAN{Name: fmt.Sprintf("lan-%d", k), CIDR: fmt.Sprintf("172.%d.0.0/16", 16+k), Site: siteName(k)})
	}
	s.Overlay = policy.Overlay{Interface: "tailscale0", MTU: 1280}
	// maxPrefixes leaves room for a block added to every node.
	s.BGP = policy.BGP{ASN: 64512, Topology: o.Topology, MaxPrefixes: 2 * n}
	if o.ExternalPeer {
		s.BGP.ExternalPeers = []policy.ExternalPeer{{Name: "tor", Address: "172.16.255.254", ASN: 64999, Export: []string{"pods"}}}
	}
	s.Calico = policy.Calico{IPPools: []policy.IPPool{{Name: "pods", CIDR: "10.64.0.0/14", BlockSize: 26}}}
	base := netip.MustParseAddr("100.64.0.1").As4()
	for i := range n {
		o4 := base
		o4[2], o4[3] = byte(i/250), byte(i%250+1)
		site, j := i%o.Sites, i/o.Sites // j: the node's index in its site
		node := policy.Node{
			Name: NodeName(i), Site: siteName(site), Role: "worker",
			OverlayAddress: netip.AddrFrom4(o4).String(),
			LANAddress:     fmt.Sprintf("172.%d.%d.%d", 16+site, j/250, j%250+1),
			PodCIDRs:       []string{Block(i).String()},
			Tailscale:      policy.NodeTailscale{Tags: []string{"tag:k8s-node"}},
			Labels:         map[string]string{"rack": fmt.Sprintf("r%d", i%20)},
		}
		if i < o.Reflectors {
			node.Role = "control-plane"
			s.BGP.RouteReflectors = append(s.BGP.RouteReflectors, node.Name)
		}
		s.Nodes = append(s.Nodes, node)
	}
	tailnet(&s.Tailnet, o.Rules)
	return f, nil
}

func siteName(k int) string { return fmt.Sprintf("site-%d", k) }

// tailnet fills the tailnet section: 50 groups, 100 service tags, rules
// grants and a test for every fifth.
func tailnet(tn *acldoc.Policy, rules int) {
	tn.Groups = map[string][]string{}
	tn.TagOwners = map[string][]string{"tag:k8s-node": {"group:team-0"}}
	for k := range 50 {
		tn.Groups[fmt.Sprintf("group:team-%d", k)] = []string{fmt.Sprintf("user-%d@example.com", k)}
	}
	for j := range 100 {
		tn.TagOwners[fmt.Sprintf("tag:svc-%d", j)] = []string{"group:team-0"}
	}
	for i := range rules {
		tn.Grants = append(tn.Grants, acldoc.Grant{
			Src: []string{fmt.Sprintf("group:team-%d", i%50)},
			Dst: []string{fmt.Sprintf("tag:svc-%d", i%100)},
			IP:  []string{fmt.Sprintf("tcp:%d", 1000+i)},
		})
		if i%5 == 0 {
			tn.Tests = append(tn.Tests, acldoc.Test{
				Src:    fmt.Sprintf("user-%d@example.com", i%50),
				Accept: []string{fmt.Sprintf("tag:svc-%d:%d", i%100, 1000+i)},
			})
		}
	}
}

// YAML encodes a policy file as `netd policy check` and `netd run` read it.
func YAML(f *policy.File) ([]byte, error) {
	b, err := yaml.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encoding the generated policy: %w", err)
	}
	return b, nil
}
