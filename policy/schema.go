package policy

import (
	"encoding/json"
	"fmt"

	"github.com/invopop/jsonschema"
)

// SchemaID is the $id of the policy file's JSON Schema.
const SchemaID = "https://netd.ducksnest.dev/schemas/" + "v1alpha1/policy.json"

// JSONSchema describes a Duration: a Go duration string.
func (Duration) JSONSchema() *jsonschema.Schema {
	return &jsonschema.Schema{
		Type:        "string",
		Pattern:     `^([0-9]+(\.[0-9]+)?(ns|us|µs|ms|s|m|h))+$|^0$`,
		Description: `A duration such as "9s" or "2m".`,
	}
}

// Schema returns the JSON Schema (draft 2020-12) of the policy file,
// generated from the Go types so that it never drifts from the loader.
// Editors use it for completion; it checks shape, not meaning (Validate
// does that).
func Schema() ([]byte, error) {
	r := &jsonschema.Reflector{RequiredFromJSONSchemaTags: true}
	s := r.Reflect(&File{})
	s.ID = SchemaID
	s.Title = "ducksnest netd network policy"
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding schema: %w", err)
	}
	return append(b, '\n'), nil
}
