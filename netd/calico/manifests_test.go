package calico

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/ducksnest/netd/policy"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// TestRenderGolden pins `netd policy render --calico` for the example
// policy (loaded under the name the golden header records).
func TestRenderGolden(t *testing.T) {
	const name = "examples/ducksnest/policy.yaml"
	data, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	f, err := policy.Load(name, data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := policy.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	got, err := Render(st, V3)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("testdata", "calico.yaml.golden")
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if d := cmp.Diff(string(want), string(got)); d != "" {
		t.Errorf("%s differs (-want +got; go test -run TestRenderGolden -update rewrites it):\n%s", path, d)
	}
}

// TestManifestsAPIVersion: the API version is the caller's choice; the
// objects are otherwise the same, except the IPAM configuration, which v3
// calls IPAMConfiguration (without libcalico-go's autoAllocateBlocks).
func TestManifestsAPIVersion(t *testing.T) {
	st := state("10.244.0.0/16", true)
	a, b := Manifests(st, V1), Manifests(st, V3)
	if len(a) != 4 || len(a) != len(b) {
		t.Fatalf("%d and %d objects, want 4", len(a), len(b))
	}
	for i := range a {
		if a[i].APIVersion != "crd.projectcalico.org/v1" || b[i].APIVersion != "projectcalico.org/v3" {
			t.Errorf("%s: api versions %q and %q", a[i].Kind, a[i].APIVersion, b[i].APIVersion)
		}
		b[i].APIVersion = a[i].APIVersion
		if a[i].Kind == "IPAMConfig" {
			if b[i].Kind != "IPAMConfiguration" || a[i].Spec["autoAllocateBlocks"] != true || b[i].Spec["autoAllocateBlocks"] != nil {
				t.Errorf("IPAM configuration: v1 %+v, v3 %+v", a[i], b[i])
			}
			b[i].Kind = a[i].Kind
			b[i].Spec["autoAllocateBlocks"] = true
		}
		if d := cmp.Diff(a[i], b[i]); d != "" {
			t.Errorf("%s differs beyond its api version:\n%s", a[i].Kind, d)
		}
		if a[i].Metadata.Labels[OwnerLabel] != OwnerValue {
			t.Errorf("%s %s has no owner label", a[i].Kind, a[i].Metadata.Name)
		}
	}
}
