package main

import (
	"encoding/json"
	"fmt"
	"sort"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// The JSON shapes of `terraform providers schema -json` (format 1.0).
type (
	schemasJSON struct {
		FormatVersion   string                   `json:"format_version"`
		ProviderSchemas map[string]*providerJSON `json:"provider_schemas"`
	}
	providerJSON struct {
		Provider          *schemaJSON            `json:"provider,omitempty"`
		ResourceSchemas   map[string]*schemaJSON `json:"resource_schemas,omitempty"`
		DataSourceSchemas map[string]*schemaJSON `json:"data_source_schemas,omitempty"`
		EphemeralSchemas  map[string]*schemaJSON `json:"ephemeral_resource_schemas,omitempty"`
	}
	schemaJSON struct {
		Version int64      `json:"version"`
		Block   *blockJSON `json:"block"`
	}
	blockJSON struct {
		Attributes map[string]*attributeJSON `json:"attributes,omitempty"`
		BlockTypes map[string]*blockTypeJSON `json:"block_types,omitempty"`
		Deprecated bool                      `json:"deprecated,omitempty"`
	}
	attributeJSON struct {
		Type       json.RawMessage `json:"type,omitempty"`
		NestedType *nestedTypeJSON `json:"nested_type,omitempty"`
		Required   bool            `json:"required,omitempty"`
		Optional   bool            `json:"optional,omitempty"`
		Computed   bool            `json:"computed,omitempty"`
		Sensitive  bool            `json:"sensitive,omitempty"`
		Deprecated bool            `json:"deprecated,omitempty"`
		WriteOnly  bool            `json:"write_only,omitempty"`
	}
	nestedTypeJSON struct {
		Attributes  map[string]*attributeJSON `json:"attributes"`
		NestingMode string                    `json:"nesting_mode"`
	}
	blockTypeJSON struct {
		NestingMode string     `json:"nesting_mode"`
		Block       *blockJSON `json:"block"`
		MinItems    int64      `json:"min_items,omitempty"`
		MaxItems    int64      `json:"max_items,omitempty"`
	}
)

// providerSchema is one provider's schema in protocol form.
type providerSchema struct {
	provider    *tfprotov6.Schema
	resources   map[string]*tfprotov6.Schema
	dataSources map[string]*tfprotov6.Schema
	ephemeral   map[string]*tfprotov6.Schema
}

// parseSchema reads a `terraform providers schema -json` document holding
// exactly one provider and converts it to protocol form.
func parseSchema(data []byte) (*providerSchema, error) {
	var doc schemasJSON
	if err := json.Unmarshal(data, &doc); err != nil {
		return nil, fmt.Errorf("decoding schema json: %w", err)
	}
	if len(doc.ProviderSchemas) != 1 {
		return nil, fmt.Errorf("want exactly one provider in the schema, got %d", len(doc.ProviderSchemas))
	}
	var pj *providerJSON
	for _, v := range doc.ProviderSchemas {
		pj = v
	}
	ps := &providerSchema{}
	var err error
	if ps.provider, err = convertSchema(pj.Provider); err != nil {
		return nil, fmt.Errorf("provider block: %w", err)
	}
	if ps.resources, err = convertAll(pj.ResourceSchemas); err != nil {
		return nil, err
	}
	if ps.dataSources, err = convertAll(pj.DataSourceSchemas); err != nil {
		return nil, err
	}
	if ps.ephemeral, err = convertAll(pj.EphemeralSchemas); err != nil {
		return nil, err
	}
	return ps, nil
}

func convertAll(in map[string]*schemaJSON) (map[string]*tfprotov6.Schema, error) {
	out := make(map[string]*tfprotov6.Schema, len(in))
	for name, s := range in {
		c, err := convertSchema(s)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		out[name] = c
	}
	return out, nil
}

func convertSchema(s *schemaJSON) (*tfprotov6.Schema, error) {
	if s == nil || s.Block == nil {
		return &tfprotov6.Schema{Block: &tfprotov6.SchemaBlock{}}, nil
	}
	b, err := convertBlock(s.Block)
	if err != nil {
		return nil, err
	}
	b.Version = s.Version
	return &tfprotov6.Schema{Version: s.Version, Block: b}, nil
}

func convertBlock(b *blockJSON) (*tfprotov6.SchemaBlock, error) {
	out := &tfprotov6.SchemaBlock{Deprecated: b.Deprecated}
	attrs, err := convertAttributes(b.Attributes)
	if err != nil {
		return nil, err
	}
	out.Attributes = attrs
	for _, name := range sortedKeys(b.BlockTypes) {
		bt := b.BlockTypes[name]
		mode, ok := blockNesting[bt.NestingMode]
		if !ok {
			return nil, fmt.Errorf("block %s: unknown nesting mode %q", name, bt.NestingMode)
		}
		inner := bt.Block
		if inner == nil {
			inner = &blockJSON{}
		}
		ib, err := convertBlock(inner)
		if err != nil {
			return nil, fmt.Errorf("block %s: %w", name, err)
		}
		out.BlockTypes = append(out.BlockTypes, &tfprotov6.SchemaNestedBlock{
			TypeName: name, Block: ib, Nesting: mode, MinItems: bt.MinItems, MaxItems: bt.MaxItems,
		})
	}
	return out, nil
}

func convertAttributes(in map[string]*attributeJSON) ([]*tfprotov6.SchemaAttribute, error) {
	var out []*tfprotov6.SchemaAttribute
	for _, name := range sortedKeys(in) {
		a := in[name]
		sa := &tfprotov6.SchemaAttribute{
			Name: name, Required: a.Required, Optional: a.Optional, Computed: a.Computed,
			Sensitive: a.Sensitive, Deprecated: a.Deprecated, WriteOnly: a.WriteOnly,
		}
		switch {
		case a.NestedType != nil:
			mode, ok := objectNesting[a.NestedType.NestingMode]
			if !ok {
				return nil, fmt.Errorf("attribute %s: unknown nesting mode %q", name, a.NestedType.NestingMode)
			}
			inner, err := convertAttributes(a.NestedType.Attributes)
			if err != nil {
				return nil, fmt.Errorf("attribute %s: %w", name, err)
			}
			sa.NestedType = &tfprotov6.SchemaObject{Attributes: inner, Nesting: mode}
		case len(a.Type) > 0:
			t, err := tftypes.ParseJSONType(a.Type) //nolint:staticcheck // the cty JSON type format is exactly what we hold
			if err != nil {
				return nil, fmt.Errorf("attribute %s: parsing type %s: %w", name, a.Type, err)
			}
			sa.Type = t
		default:
			return nil, fmt.Errorf("attribute %s: neither type nor nested_type", name)
		}
		out = append(out, sa)
	}
	return out, nil
}

var blockNesting = map[string]tfprotov6.SchemaNestedBlockNestingMode{
	"single": tfprotov6.SchemaNestedBlockNestingModeSingle,
	"list":   tfprotov6.SchemaNestedBlockNestingModeList,
	"set":    tfprotov6.SchemaNestedBlockNestingModeSet,
	"map":    tfprotov6.SchemaNestedBlockNestingModeMap,
	"group":  tfprotov6.SchemaNestedBlockNestingModeGroup,
}

var objectNesting = map[string]tfprotov6.SchemaObjectNestingMode{
	"single": tfprotov6.SchemaObjectNestingModeSingle,
	"list":   tfprotov6.SchemaObjectNestingModeList,
	"set":    tfprotov6.SchemaObjectNestingModeSet,
	"map":    tfprotov6.SchemaObjectNestingModeMap,
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
