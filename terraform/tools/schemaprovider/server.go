package main

import (
	"context"
	"fmt"
	"os"
	"sync"

	"github.com/hashicorp/terraform-plugin-go/tfprotov6"
	"github.com/hashicorp/terraform-plugin-go/tftypes"
)

// provider implements tfprotov6.ProviderServer from a schema alone.
// Validation calls succeed (Terraform itself checks the configuration
// against the schema); calls that need the real provider return an error
// diagnostic.
type provider struct {
	name    string
	schema  *providerSchema
	logPath string
	mu      sync.Mutex
}

var _ tfprotov6.ProviderServer = (*provider)(nil)

func newProvider(name string, load func() ([]byte, error), logPath string) (*provider, error) {
	data, err := load()
	if err != nil {
		return nil, err
	}
	s, err := parseSchema(data)
	if err != nil {
		return nil, fmt.Errorf("schema for %s: %w", name, err)
	}
	return &provider{name: name, schema: s, logPath: logPath}, nil
}

// record appends one line per RPC to the call log, when one is configured.
func (p *provider) record(method, typeName string) {
	if p.logPath == "" {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.logPath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
	if err != nil {
		return
	}
	defer f.Close()
	fmt.Fprintf(f, "%s %s %s\n", p.name, method, typeName)
}

// unsupported is the answer to every call that would need the real provider.
func (p *provider) unsupported(method, typeName string) []*tfprotov6.Diagnostic {
	p.record(method, typeName)
	return []*tfprotov6.Diagnostic{{
		Severity: tfprotov6.DiagnosticSeverityError,
		Summary:  "schema-only provider",
		Detail: fmt.Sprintf("terraform-provider-%s here only serves a schema for offline checks; %s(%s) needs the real provider (use mock_provider in tests)",
			p.name, method, typeName),
	}}
}

func (p *provider) unknownType(kind, typeName string) []*tfprotov6.Diagnostic {
	return []*tfprotov6.Diagnostic{{
		Severity: tfprotov6.DiagnosticSeverityError,
		Summary:  "unknown " + kind,
		Detail:   fmt.Sprintf("%s %q is not in the schema served by terraform-provider-%s (regenerate it with terraform/tools/extract-aws-schema.sh)", kind, typeName, p.name),
	}}
}

func (p *provider) GetMetadata(context.Context, *tfprotov6.GetMetadataRequest) (*tfprotov6.GetMetadataResponse, error) {
	p.record("GetMetadata", "")
	resp := &tfprotov6.GetMetadataResponse{ServerCapabilities: &tfprotov6.ServerCapabilities{PlanDestroy: true}}
	for _, n := range sortedKeys(p.schema.resources) {
		resp.Resources = append(resp.Resources, tfprotov6.ResourceMetadata{TypeName: n})
	}
	for _, n := range sortedKeys(p.schema.dataSources) {
		resp.DataSources = append(resp.DataSources, tfprotov6.DataSourceMetadata{TypeName: n})
	}
	for _, n := range sortedKeys(p.schema.ephemeral) {
		resp.EphemeralResources = append(resp.EphemeralResources, tfprotov6.EphemeralResourceMetadata{TypeName: n})
	}
	return resp, nil
}

func (p *provider) GetProviderSchema(context.Context, *tfprotov6.GetProviderSchemaRequest) (*tfprotov6.GetProviderSchemaResponse, error) {
	p.record("GetProviderSchema", "")
	return &tfprotov6.GetProviderSchemaResponse{
		ServerCapabilities:       &tfprotov6.ServerCapabilities{PlanDestroy: true},
		Provider:                 p.schema.provider,
		ResourceSchemas:          p.schema.resources,
		DataSourceSchemas:        p.schema.dataSources,
		EphemeralResourceSchemas: p.schema.ephemeral,
		Functions:                map[string]*tfprotov6.Function{},
	}, nil
}

func (p *provider) GetResourceIdentitySchemas(context.Context, *tfprotov6.GetResourceIdentitySchemasRequest) (*tfprotov6.GetResourceIdentitySchemasResponse, error) {
	p.record("GetResourceIdentitySchemas", "")
	return &tfprotov6.GetResourceIdentitySchemasResponse{IdentitySchemas: map[string]*tfprotov6.ResourceIdentitySchema{}}, nil
}

func (p *provider) ValidateProviderConfig(_ context.Context, req *tfprotov6.ValidateProviderConfigRequest) (*tfprotov6.ValidateProviderConfigResponse, error) {
	p.record("ValidateProviderConfig", "")
	return &tfprotov6.ValidateProviderConfigResponse{PreparedConfig: req.Config}, nil
}

func (p *provider) ConfigureProvider(context.Context, *tfprotov6.ConfigureProviderRequest) (*tfprotov6.ConfigureProviderResponse, error) {
	// Configuring is harmless; the calls after it are what we refuse.
	p.record("ConfigureProvider", "")
	return &tfprotov6.ConfigureProviderResponse{}, nil
}

func (p *provider) StopProvider(context.Context, *tfprotov6.StopProviderRequest) (*tfprotov6.StopProviderResponse, error) {
	p.record("StopProvider", "")
	return &tfprotov6.StopProviderResponse{}, nil
}

func (p *provider) ValidateResourceConfig(_ context.Context, req *tfprotov6.ValidateResourceConfigRequest) (*tfprotov6.ValidateResourceConfigResponse, error) {
	p.record("ValidateResourceConfig", req.TypeName)
	if _, ok := p.schema.resources[req.TypeName]; !ok {
		return &tfprotov6.ValidateResourceConfigResponse{Diagnostics: p.unknownType("resource type", req.TypeName)}, nil
	}
	return &tfprotov6.ValidateResourceConfigResponse{}, nil
}

func (p *provider) ValidateDataResourceConfig(_ context.Context, req *tfprotov6.ValidateDataResourceConfigRequest) (*tfprotov6.ValidateDataResourceConfigResponse, error) {
	p.record("ValidateDataResourceConfig", req.TypeName)
	if _, ok := p.schema.dataSources[req.TypeName]; !ok {
		return &tfprotov6.ValidateDataResourceConfigResponse{Diagnostics: p.unknownType("data source", req.TypeName)}, nil
	}
	return &tfprotov6.ValidateDataResourceConfigResponse{}, nil
}

func (p *provider) ValidateEphemeralResourceConfig(_ context.Context, req *tfprotov6.ValidateEphemeralResourceConfigRequest) (*tfprotov6.ValidateEphemeralResourceConfigResponse, error) {
	p.record("ValidateEphemeralResourceConfig", req.TypeName)
	if _, ok := p.schema.ephemeral[req.TypeName]; !ok {
		return &tfprotov6.ValidateEphemeralResourceConfigResponse{Diagnostics: p.unknownType("ephemeral resource", req.TypeName)}, nil
	}
	return &tfprotov6.ValidateEphemeralResourceConfigResponse{}, nil
}

// UpgradeResourceState decodes stored JSON state with the current schema
// (there is only one schema version here, so nothing to migrate).
func (p *provider) UpgradeResourceState(_ context.Context, req *tfprotov6.UpgradeResourceStateRequest) (*tfprotov6.UpgradeResourceStateResponse, error) {
	p.record("UpgradeResourceState", req.TypeName)
	s, ok := p.schema.resources[req.TypeName]
	if !ok {
		return &tfprotov6.UpgradeResourceStateResponse{Diagnostics: p.unknownType("resource type", req.TypeName)}, nil
	}
	if req.RawState == nil || len(req.RawState.JSON) == 0 {
		return &tfprotov6.UpgradeResourceStateResponse{Diagnostics: p.unsupported("UpgradeResourceState(flatmap)", req.TypeName)}, nil
	}
	typ := s.ValueType()
	v, err := tftypes.ValueFromJSONWithOpts(req.RawState.JSON, typ, tftypes.ValueFromJSONOpts{IgnoreUndefinedAttributes: true})
	if err != nil {
		return nil, fmt.Errorf("decoding state of %s: %w", req.TypeName, err)
	}
	dv, err := tfprotov6.NewDynamicValue(typ, v)
	if err != nil {
		return nil, fmt.Errorf("encoding state of %s: %w", req.TypeName, err)
	}
	return &tfprotov6.UpgradeResourceStateResponse{UpgradedState: &dv}, nil
}

func (p *provider) UpgradeResourceIdentity(_ context.Context, req *tfprotov6.UpgradeResourceIdentityRequest) (*tfprotov6.UpgradeResourceIdentityResponse, error) {
	return &tfprotov6.UpgradeResourceIdentityResponse{Diagnostics: p.unsupported("UpgradeResourceIdentity", req.TypeName)}, nil
}

func (p *provider) ReadResource(_ context.Context, req *tfprotov6.ReadResourceRequest) (*tfprotov6.ReadResourceResponse, error) {
	return &tfprotov6.ReadResourceResponse{Diagnostics: p.unsupported("ReadResource", req.TypeName)}, nil
}

func (p *provider) PlanResourceChange(_ context.Context, req *tfprotov6.PlanResourceChangeRequest) (*tfprotov6.PlanResourceChangeResponse, error) {
	return &tfprotov6.PlanResourceChangeResponse{Diagnostics: p.unsupported("PlanResourceChange", req.TypeName)}, nil
}

func (p *provider) ApplyResourceChange(_ context.Context, req *tfprotov6.ApplyResourceChangeRequest) (*tfprotov6.ApplyResourceChangeResponse, error) {
	return &tfprotov6.ApplyResourceChangeResponse{Diagnostics: p.unsupported("ApplyResourceChange", req.TypeName)}, nil
}

func (p *provider) ImportResourceState(_ context.Context, req *tfprotov6.ImportResourceStateRequest) (*tfprotov6.ImportResourceStateResponse, error) {
	return &tfprotov6.ImportResourceStateResponse{Diagnostics: p.unsupported("ImportResourceState", req.TypeName)}, nil
}

func (p *provider) MoveResourceState(_ context.Context, req *tfprotov6.MoveResourceStateRequest) (*tfprotov6.MoveResourceStateResponse, error) {
	return &tfprotov6.MoveResourceStateResponse{Diagnostics: p.unsupported("MoveResourceState", req.TargetTypeName)}, nil
}

func (p *provider) GenerateResourceConfig(_ context.Context, req *tfprotov6.GenerateResourceConfigRequest) (*tfprotov6.GenerateResourceConfigResponse, error) {
	return &tfprotov6.GenerateResourceConfigResponse{Diagnostics: p.unsupported("GenerateResourceConfig", req.TypeName)}, nil
}

func (p *provider) ReadDataSource(_ context.Context, req *tfprotov6.ReadDataSourceRequest) (*tfprotov6.ReadDataSourceResponse, error) {
	return &tfprotov6.ReadDataSourceResponse{Diagnostics: p.unsupported("ReadDataSource", req.TypeName)}, nil
}

func (p *provider) OpenEphemeralResource(_ context.Context, req *tfprotov6.OpenEphemeralResourceRequest) (*tfprotov6.OpenEphemeralResourceResponse, error) {
	return &tfprotov6.OpenEphemeralResourceResponse{Diagnostics: p.unsupported("OpenEphemeralResource", req.TypeName)}, nil
}

func (p *provider) RenewEphemeralResource(_ context.Context, req *tfprotov6.RenewEphemeralResourceRequest) (*tfprotov6.RenewEphemeralResourceResponse, error) {
	return &tfprotov6.RenewEphemeralResourceResponse{Diagnostics: p.unsupported("RenewEphemeralResource", req.TypeName)}, nil
}

func (p *provider) CloseEphemeralResource(_ context.Context, req *tfprotov6.CloseEphemeralResourceRequest) (*tfprotov6.CloseEphemeralResourceResponse, error) {
	return &tfprotov6.CloseEphemeralResourceResponse{Diagnostics: p.unsupported("CloseEphemeralResource", req.TypeName)}, nil
}

func (p *provider) GetFunctions(context.Context, *tfprotov6.GetFunctionsRequest) (*tfprotov6.GetFunctionsResponse, error) {
	p.record("GetFunctions", "")
	return &tfprotov6.GetFunctionsResponse{Functions: map[string]*tfprotov6.Function{}}, nil
}

func (p *provider) CallFunction(_ context.Context, req *tfprotov6.CallFunctionRequest) (*tfprotov6.CallFunctionResponse, error) {
	p.record("CallFunction", req.Name)
	return &tfprotov6.CallFunctionResponse{Error: &tfprotov6.FunctionError{
		Text: fmt.Sprintf("schema-only provider %s serves no functions", p.name),
	}}, nil
}
