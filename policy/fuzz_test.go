package policy

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzLoad feeds arbitrary bytes through Load, Validate and Compile: they
// may reject the input but must never panic, and every error must carry a
// position.
func FuzzLoad(f *testing.F) {
	files, _ := filepath.Glob("testdata/*/*.yaml")
	files = append(files, "../"+exampleName)
	for _, p := range files {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Add([]byte("a: &a [*a]"))
	f.Add([]byte("spec: &s {nodes: [*s]}"))
	f.Add([]byte(`{"apiVersion": "netd.ducksnest.dev/v1alpha1", "kind": "NetworkPolicy", "spec": {"nodes": [{"name": "x"}]}}`))
	f.Fuzz(func(t *testing.T, data []byte) {
		file, err := Load("fuzz.yaml", data)
		if err != nil {
			checkPositioned(t, err)
			return
		}
		if _, err := Compile(file); err != nil {
			checkPositioned(t, err)
		}
	})
}

func checkPositioned(t *testing.T, err error) {
	t.Helper()
	var l ErrorList
	if !errors.As(err, &l) {
		t.Fatalf("error is %T, not ErrorList: %v", err, err)
	}
	for _, e := range l {
		if e.Line < 1 || e.Col < 1 || e.File != "fuzz.yaml" || e.Msg == "" {
			t.Fatalf("error without a position: %#v", e)
		}
	}
}
