package policy

import (
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

// exampleName is the name the example is loaded under in tests, so that
// the golden files do not depend on the working directory.
const exampleName = "examples/ducksnest/policy.yaml"

func loadExample(t testing.TB) *File {
	t.Helper()
	data, err := os.ReadFile("../" + exampleName)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Load(exampleName, data)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

// golden compares got with testdata/<name>, or rewrites it with -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
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
		t.Errorf("%s differs (-want +got; go test -update rewrites it):\n%s", path, d)
	}
}

func TestGoldenExample(t *testing.T) {
	s, err := Compile(loadExample(t))
	if err != nil {
		t.Fatal(err)
	}
	state, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ducksnest/state.json.golden", append(state, '\n'))
	golden(t, "ducksnest/tailnet.hujson.golden", s.Tailnet.Tailscale.HuJSON)
	golden(t, "ducksnest/tailnet-headscale.hujson.golden", s.Tailnet.Headscale.HuJSON)
	n, err := s.Node("old")
	if err != nil {
		t.Fatal(err)
	}
	node, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "ducksnest/node-old.json.golden", append(node, '\n'))
}
