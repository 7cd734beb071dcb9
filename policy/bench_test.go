package policy_test

import (
	"testing"

	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
	"github.com/ducksnest/netd/policy/gen"
)

// bigPolicy builds a cluster of n nodes (three route reflectors, one /24
// pod block each, a top-of-rack peer) and a tailnet section of rules
// grants plus tests.
func bigPolicy(tb testing.TB, n, rules int) *policy.File {
	tb.Helper()
	f, err := gen.Policy(gen.Options{Nodes: n, Rules: rules, ExternalPeer: true})
	if err != nil {
		tb.Fatal(err)
	}
	return f
}

func compiledNode(t *testing.T, s *desired.State, name string) *desired.Node {
	t.Helper()
	n, err := s.Node(name)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

func TestBigPolicy(t *testing.T) {
	s, err := policy.Compile(bigPolicy(t, 1000, 500))
	if err != nil {
		t.Fatal(err)
	}
	if len(s.Nodes) != 1000 {
		t.Fatalf("%d nodes", len(s.Nodes))
	}
	n := compiledNode(t, s, "node-0500")
	// A client peers with the three reflectors and the top-of-rack router,
	// and takes every other node's block from each reflector.
	if len(n.BGP.Peers) != 4 || len(n.BGP.Peers[0].Import.Ranges) != 999 {
		t.Errorf("node-0500: %d peers, %d ranges from the first", len(n.BGP.Peers), len(n.BGP.Peers[0].Import.Ranges))
	}
	if rr := compiledNode(t, s, "node-0000"); len(rr.BGP.Peers) != 1000 || !rr.BGP.RouteReflector {
		t.Errorf("reflector node-0000: %d peers", len(rr.BGP.Peers))
	}
}

// BenchmarkCompile1000Nodes compiles a 1,000-node policy with 500 grants
// and 100 tests (validation, tailnet generation and rendering, digest).
func BenchmarkCompile1000Nodes(b *testing.B) {
	f := bigPolicy(b, 1000, 500)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := policy.Compile(f); err != nil {
			b.Fatal(err)
		}
	}
}
