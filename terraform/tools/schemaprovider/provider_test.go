package main

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

func newTestProvider(t *testing.T, name string) (*provider, string) {
	t.Helper()
	log := filepath.Join(t.TempDir(), "calls.log")
	p, err := newProvider(name, providers[name].load, log)
	if err != nil {
		t.Fatalf("newProvider(%s): %v", name, err)
	}
	return p, log
}

func attr(b *tfprotov6.SchemaBlock, name string) *tfprotov6.SchemaAttribute {
	for _, a := range b.Attributes {
		if a.Name == name {
			return a
		}
	}
	return nil
}

func TestEmbeddedSchemas(t *testing.T) {
	ctx := context.Background()
	aws, _ := newTestProvider(t, "aws")
	resp, err := aws.GetProviderSchema(ctx, &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	inst := resp.ResourceSchemas["aws_instance"]
	if inst == nil {
		t.Fatal("aws_instance missing from the served schema")
	}
	var meta *tfprotov6.SchemaNestedBlock
	for _, bt := range inst.Block.BlockTypes {
		if bt.TypeName == "metadata_options" {
			meta = bt
		}
	}
	if meta == nil || attr(meta.Block, "http_tokens") == nil {
		t.Fatal("aws_instance.metadata_options.http_tokens missing")
	}
	if a := attr(resp.ResourceSchemas["aws_security_group"].Block, "description"); a == nil || !a.Optional {
		t.Fatal("aws_security_group.description (restored by the patch) missing")
	}
	if _, ok := resp.DataSourceSchemas["aws_ami"]; !ok {
		t.Fatal("data source aws_ami missing")
	}

	ts, _ := newTestProvider(t, "tailscale")
	tresp, err := ts.GetProviderSchema(ctx, &tfprotov6.GetProviderSchemaRequest{})
	if err != nil {
		t.Fatal(err)
	}
	key := tresp.ResourceSchemas["tailscale_tailnet_key"]
	if key == nil {
		t.Fatal("tailscale_tailnet_key missing")
	}
	if a := attr(key.Block, "key"); a == nil || !a.Sensitive || !a.Computed || a.Optional {
		t.Fatalf("tailscale_tailnet_key.key must be sensitive and computed only: %+v", a)
	}
	if a := attr(key.Block, "tags"); a == nil || !a.Type.Equal(tftypes.Set{ElementType: tftypes.String}) {
		t.Fatalf("tailscale_tailnet_key.tags must be a set of strings: %+v", a)
	}
	if _, ok := tresp.ResourceSchemas["tailscale_acl"]; ok {
		t.Fatal("tailscale_acl must not be served: Terraform does not manage the tailnet policy")
	}
}

func TestValidateAndRefuse(t *testing.T) {
	ctx := context.Background()
	p, log := newTestProvider(t, "aws")
	v, err := p.ValidateResourceConfig(ctx, &tfprotov6.ValidateResourceConfigRequest{TypeName: "aws_instance"})
	if err != nil || len(v.Diagnostics) != 0 {
		t.Fatalf("validating a known type: %v %v", err, v.Diagnostics)
	}
	v, err = p.ValidateResourceConfig(ctx, &tfprotov6.ValidateResourceConfigRequest{TypeName: "aws_nat_gateway"})
	if err != nil || len(v.Diagnostics) != 1 || v.Diagnostics[0].Severity != tfprotov6.DiagnosticSeverityError {
		t.Fatalf("a type outside the extracted schema must be an error: %v %v", err, v.Diagnostics)
	}
	pl, err := p.PlanResourceChange(ctx, &tfprotov6.PlanResourceChangeRequest{TypeName: "aws_instance"})
	if err != nil || len(pl.Diagnostics) != 1 || !strings.Contains(pl.Diagnostics[0].Detail, "needs the real provider") {
		t.Fatalf("plan must be refused: %v %v", err, pl.Diagnostics)
	}
	b, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	want := "aws ValidateResourceConfig aws_instance\naws ValidateResourceConfig aws_nat_gateway\naws PlanResourceChange aws_instance\n"
	if string(b) != want {
		t.Fatalf("call log:\n%s\nwant:\n%s", b, want)
	}
}

func TestUpgradeResourceState(t *testing.T) {
	p, _ := newTestProvider(t, "tailscale")
	resp, err := p.UpgradeResourceState(context.Background(), &tfprotov6.UpgradeResourceStateRequest{
		TypeName: "tailscale_tailnet_key",
		RawState: &tfprotov6.RawState{JSON: []byte(`{"id":"k1","reusable":false,"tags":["tag:a"],"gone":1}`)},
	})
	if err != nil || len(resp.Diagnostics) != 0 {
		t.Fatalf("%v %v", err, resp.Diagnostics)
	}
	typ := p.schema.resources["tailscale_tailnet_key"].ValueType()
	v, err := resp.UpgradedState.Unmarshal(typ)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]tftypes.Value
	if err := v.As(&m); err != nil {
		t.Fatal(err)
	}
	var id string
	if err := m["id"].As(&id); err != nil || id != "k1" {
		t.Fatalf("id = %q, %v", id, err)
	}
}

func TestExtract(t *testing.T) {
	dir := t.TempDir()
	tf := "resource \"aws_vpc\" \"a\" {}\n  data \"aws_ami\" \"b\" {}\nresource \"tailscale_tailnet_key\" \"c\" {}\n"
	if err := os.WriteFile(filepath.Join(dir, "main.tf"), []byte(tf), 0o644); err != nil {
		t.Fatal(err)
	}
	used, err := usedTypes([]string{dir}, "aws_")
	if err != nil {
		t.Fatal(err)
	}
	full := `{"format_version":"1.0","provider_schemas":{"p":{"provider":{"version":0,"block":{}},
	  "resource_schemas":{"aws_vpc":{"version":1,"block":{"attributes":{"id":{"type":"string","computed":true}}}},
	                      "aws_subnet":{"version":1,"block":{}}},
	  "data_source_schemas":{"aws_ami":{"version":0,"block":{}}}}}}`
	part, err := extract([]byte(full), used)
	if err != nil {
		t.Fatal(err)
	}
	p := part.ProviderSchemas["p"]
	if len(p.ResourceSchemas) != 1 || p.ResourceSchemas["aws_vpc"] == nil || len(p.DataSourceSchemas) != 1 {
		t.Fatalf("extract kept %v / %v", sortedKeys(p.ResourceSchemas), sortedKeys(p.DataSourceSchemas))
	}

	patch := filepath.Join(dir, "patch.json")
	if err := os.WriteFile(patch, []byte(`{"resource_schemas":{"aws_vpc":{"id":{"type":"string"}}}}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := applyPatch(part, patch); err == nil || !strings.Contains(err.Error(), "already exists") {
		t.Fatalf("a patch over an existing attribute must fail, got %v", err)
	}

	used["resource"]["aws_nat_gateway"] = true
	if _, err := extract([]byte(full), used); err == nil {
		t.Fatal("a used type missing from the full schema must be an error")
	}
}
