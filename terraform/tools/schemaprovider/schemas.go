package main

import (
	"bytes"
	"compress/gzip"
	"embed"
	"fmt"
	"io"
)

//go:embed schemas/aws.json.gz schemas/tailscale.json
var schemaFS embed.FS

type source struct {
	address string // provider source address, as in required_providers
	load    func() ([]byte, error)
}

var providers = map[string]source{
	"aws":       {"registry.terraform.io/hashicorp/aws", embedded("schemas/aws.json.gz")},
	"tailscale": {"registry.terraform.io/tailscale/tailscale", embedded("schemas/tailscale.json")},
}

func embedded(name string) func() ([]byte, error) {
	return func() ([]byte, error) {
		b, err := schemaFS.ReadFile(name)
		if err != nil {
			return nil, fmt.Errorf("reading embedded %s: %w", name, err)
		}
		return maybeGunzip(b)
	}
}

// maybeGunzip returns b decompressed when it is gzip data, b otherwise.
func maybeGunzip(b []byte) ([]byte, error) {
	if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b {
		return b, nil
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		return nil, fmt.Errorf("opening gzip data: %w", err)
	}
	defer zr.Close()
	out, err := io.ReadAll(zr)
	if err != nil {
		return nil, fmt.Errorf("decompressing: %w", err)
	}
	return out, nil
}
