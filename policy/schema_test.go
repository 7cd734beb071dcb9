package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"go.yaml.in/yaml/v4"
)

func compiledSchema(t *testing.T) *jsonschema.Schema {
	t.Helper()
	b, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	if m, _ := doc.(map[string]any); m["$schema"] != "https://json-schema.org/draft/2020-12/schema" {
		t.Errorf("$schema = %v, want draft 2020-12", m["$schema"])
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource(SchemaID, doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile(SchemaID)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// yamlToJSON converts a YAML document into the JSON value the schema
// validator takes.
func yamlToJSON(t *testing.T, data []byte) any {
	t.Helper()
	var v any
	if err := yaml.Unmarshal(data, &v); err != nil {
		t.Fatal(err)
	}
	j, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	out, err := jsonschema.UnmarshalJSON(bytes.NewReader(j))
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func TestSchemaAcceptsValidFiles(t *testing.T) {
	s := compiledSchema(t)
	for _, p := range []string{"../" + exampleName, "testdata/valid/minimal.yaml"} {
		data, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlToJSON(t, data)); err != nil {
			t.Errorf("%s: %v", p, err)
		}
	}
}

func TestSchemaRejectsInvalidFiles(t *testing.T) {
	s := compiledSchema(t)
	// The schema checks shape (unknown fields, types, enums, required
	// fields); meaning is Validate's job.
	for _, name := range []string{"unknown-field", "wrong-type-int", "wrong-type-list", "wrong-type-mapping", "bad-duration", "api-version", "kind", "bgp-asn-missing", "bgp-topology", "node-role", "overlay-mtu-low"} {
		data, err := os.ReadFile("testdata/invalid/" + name + ".yaml")
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Validate(yamlToJSON(t, data)); err == nil {
			t.Errorf("%s: the schema accepts it", name)
		}
	}
}

func TestSchemaIsStable(t *testing.T) {
	a, err := Schema()
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Schema()
	if !bytes.Equal(a, b) {
		t.Error("Schema output differs between calls")
	}
}
