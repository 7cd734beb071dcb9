package policy

import (
	"fmt"
	"net/netip"
	"testing"

	"github.com/ducksnest/netd/policy/acldoc"
)

// bigPolicy builds a cluster of n nodes (three route reflectors, one /24
// pod block each) and a tailnet section of rules grants plus tests.
func bigPolicy(n, rules int) *File {
	f := &File{APIVersion: APIVersion, Kind: Kind, Metadata: Metadata{Name: "big"}}
	s := &f.Spec
	s.Networks = Networks{Pods: "10.64.0.0/14", Services: "10.96.0.0/12", Overlay: "100.64.0.0/10",
		LANs: []LAN{{Name: "dc", CIDR: "192.168.0.0/16", Site: "dc"}}}
	s.Overlay = Overlay{Interface: "tailscale0", MTU: 1280}
	s.BGP = BGP{ASN: 64512, Topology: "route-reflector", MaxPrefixes: 2 * n,
		ExternalPeers: []ExternalPeer{{Name: "tor", Address: "192.168.255.254", ASN: 64999, Export: []string{"pods"}}}}
	s.Calico = Calico{IPPools: []IPPool{{Name: "pods", CIDR: "10.64.0.0/14", BlockSize: 26}}}
	base := netip.MustParseAddr("100.64.0.1").As4()
	for i := range n {
		o := base
		o[2], o[3] = byte(i/250), byte(i%250+1)
		node := Node{
			Name: fmt.Sprintf("node-%04d", i), Site: "dc", Role: "worker",
			OverlayAddress: netip.AddrFrom4(o).String(),
			LANAddress:     fmt.Sprintf("192.168.%d.%d", i/250, i%250+1),
			PodCIDRs:       []string{fmt.Sprintf("10.%d.%d.0/24", 64+i/256, i%256)},
			Tailscale:      NodeTailscale{Tags: []string{"tag:k8s-node"}},
			Labels:         map[string]string{"rack": fmt.Sprintf("r%d", i%20)},
		}
		if i < 3 {
			node.Role = "control-plane"
			s.BGP.RouteReflectors = append(s.BGP.RouteReflectors, node.Name)
		}
		s.Nodes = append(s.Nodes, node)
	}
	tn := &s.Tailnet
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
	return f
}

func TestBigPolicy(t *testing.T) {
	s := mustCompile(t, bigPolicy(1000, 500))
	if len(s.Nodes) != 1000 {
		t.Fatalf("%d nodes", len(s.Nodes))
	}
	n := node(t, s, "node-0500")
	// A client peers with the three reflectors and the top-of-rack router,
	// and takes every other node's block from each reflector.
	if len(n.BGP.Peers) != 4 || len(n.BGP.Peers[0].Import.Ranges) != 999 {
		t.Errorf("node-0500: %d peers, %d ranges from the first", len(n.BGP.Peers), len(n.BGP.Peers[0].Import.Ranges))
	}
	if rr := node(t, s, "node-0000"); len(rr.BGP.Peers) != 1000 || !rr.BGP.RouteReflector {
		t.Errorf("reflector node-0000: %d peers", len(rr.BGP.Peers))
	}
}

// BenchmarkCompile1000Nodes compiles a 1,000-node policy with 500 grants
// and 100 tests (validation, tailnet generation and rendering, digest).
func BenchmarkCompile1000Nodes(b *testing.B) {
	f := bigPolicy(1000, 500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Compile(f); err != nil {
			b.Fatal(err)
		}
	}
}
