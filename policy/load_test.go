package policy

import (
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"

	"go.yaml.in/yaml/v4"
)

// JSON is YAML: the example written as JSON loads and compiles to the same
// state, and errors in JSON files have positions too.
func TestLoadJSON(t *testing.T) {
	data, err := os.ReadFile("../" + exampleName)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	f, err := Load("policy.json", j)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := mustCompile(t, f).Digest, mustCompile(t, loadExample(t)).Digest; got != want {
		t.Errorf("JSON digest %s, YAML digest %s", got, want)
	}
	bad := strings.Replace(string(j), `"asn": 64512`, `"asn": "64512"`, 1)
	_, err = Load("policy.json", []byte(bad))
	var l ErrorList
	if !errors.As(err, &l) || len(l) != 1 || l[0].Line < 2 || l[0].Col < 2 || !strings.Contains(l[0].Msg, "asn must be an integer") {
		t.Errorf("bad JSON: %v", err)
	}
}

func TestLoadAnchorsAndMerges(t *testing.T) {
	data, err := os.ReadFile("testdata/valid/minimal.yaml")
	if err != nil {
		t.Fatal(err)
	}
	// The two workers share their settings through an anchor and a merge key.
	s := strings.Replace(string(data), "    - name: a\n      site: home\n      role: worker\n",
		"    - &worker\n      name: a\n      site: home\n      role: worker\n", 1)
	s = strings.Replace(s, "    - name: b\n      site: home\n      role: worker\n", "    - <<: *worker\n      name: b\n", 1)
	s = strings.Replace(s, "      lanAddress: 192.168.0.12\n      podCIDRs: [10.244.2.0/24]\n", "      lanAddress: 192.168.0.12\n      podCIDRs: [10.244.2.0/24]\n      overlayAddress: 100.64.0.2\n", 1)
	s = strings.Replace(s, "      overlayAddress: 100.64.0.2\n      lanAddress: 192.168.0.12\n", "      lanAddress: 192.168.0.12\n", 1)
	f, err := Load("merge.yaml", []byte(s))
	if err != nil {
		t.Fatalf("%v\n%s", err, s)
	}
	st := mustCompile(t, f)
	b, err := st.Node("b")
	if err != nil {
		t.Fatal(err)
	}
	if b.Site != "home" || b.Role != "worker" || b.OverlayAddr.String() != "100.64.0.2" || b.PodCIDRs[0].String() != "10.244.2.0/24" {
		t.Errorf("merged node b = %+v", b)
	}

	for name, doc := range map[string]string{
		"self-alias":   "spec: &s {nodes: [*s]}",
		"bomb":         "metadata: {name: &a [x, x, x, x, x, x, x, x, x, x]}\nkind: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\napiVersion: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\nspec:\n  nodes: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n  bgp: &e {externalPeers: [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]}\n  calico: &f {ipPools: [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]}\n  tailnet: {groups: {x: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]}}\n",
		"bomb-strings": "spec:\n  tailnet:\n    groups:\n      a: &a [x, x, x, x, x, x, x, x, x, x]\n      b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a, *a]\n      c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b, *b]\n      d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c, *c]\n      e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d, *d]\n      f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e, *e]\n      g: [*f, *f, *f, *f, *f, *f, *f, *f, *f, *f]\n",
		"empty":        "# nothing\n",
		"scalar":       "just a string\n",
	} {
		_, err := Load(name, []byte(doc))
		var l ErrorList
		if !errors.As(err, &l) || len(l) == 0 || len(l) > maxErrors {
			t.Errorf("%s: %d errors: %.300v", name, len(l), err)
		}
	}
}
