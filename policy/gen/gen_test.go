package gen

import (
	"bytes"
	"testing"

	"github.com/ducksnest/netd/policy"
)

// compileYAML encodes, loads and compiles: what `netd policy check` does
// with the file the lab writes.
func compileYAML(t *testing.T, o Options) ([]byte, *policy.File) {
	t.Helper()
	f, err := Policy(o)
	if err != nil {
		t.Fatal(err)
	}
	b, err := YAML(f)
	if err != nil {
		t.Fatal(err)
	}
	g, err := policy.Load("gen.yaml", b)
	if err != nil {
		t.Fatalf("%+v: loading the generated file: %v", o, err)
	}
	if _, err := policy.Compile(g); err != nil {
		t.Fatalf("%+v: compiling the generated file: %v", o, err)
	}
	return b, g
}

func TestValidForSeveralSizes(t *testing.T) {
	for _, o := range []Options{
		{Nodes: 1},
		{Nodes: 4, Sites: 2, Topology: FullMesh},
		{Nodes: 25, Sites: 3, Topology: RouteReflector, Reflectors: 2},
		{Nodes: 100, Sites: 4, Topology: FullMesh},
		{Nodes: 100, Sites: 4},
		{Nodes: MaxNodes, Sites: MaxSites, Rules: 50, ExternalPeer: true},
	} {
		_, f := compileYAML(t, o)
		if len(f.Spec.Nodes) != o.Nodes {
			t.Errorf("%+v: %d nodes", o, len(f.Spec.Nodes))
		}
		wantRR := 0
		if o.Topology != FullMesh {
			wantRR = min(o.Nodes, 3)
			if o.Reflectors != 0 {
				wantRR = o.Reflectors
			}
		}
		if got := len(f.Spec.BGP.RouteReflectors); got != wantRR {
			t.Errorf("%+v: %d route reflectors, want %d", o, got, wantRR)
		}
		sites := map[string]int{}
		for _, n := range f.Spec.Nodes {
			sites[n.Site]++
		}
		if want := max(o.Sites, 1); len(sites) != min(want, o.Nodes) {
			t.Errorf("%+v: nodes in %d sites, want %d", o, len(sites), want)
		}
	}
}

func TestDeterministic(t *testing.T) {
	o := Options{Nodes: 60, Sites: 3, Rules: 10}
	a, _ := compileYAML(t, o)
	b, _ := compileYAML(t, o)
	if !bytes.Equal(a, b) {
		t.Error("two runs with the same options generated different files")
	}
}

func TestExtraBlockIsFree(t *testing.T) {
	used := map[string]bool{}
	for i := range MaxNodes {
		used[Block(i).String()] = true
	}
	for k := range 1024 - MaxNodes {
		if used[ExtraBlock(k).String()] {
			t.Errorf("extra block %d (%s) is a node's block", k, ExtraBlock(k))
		}
	}
}

func TestBadOptions(t *testing.T) {
	for _, o := range []Options{
		{Nodes: 0},
		{Nodes: MaxNodes + 1},
		{Nodes: 4, Sites: MaxSites + 1},
		{Nodes: 4, Topology: "ring"},
		{Nodes: 4, Topology: FullMesh, Reflectors: 1},
		{Nodes: 4, Reflectors: 5},
	} {
		if _, err := Policy(o); err == nil {
			t.Errorf("%+v: no error", o)
		}
	}
}
