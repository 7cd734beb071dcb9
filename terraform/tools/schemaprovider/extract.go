package main

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
)

// blockRE finds `resource "aws_x"`, `data "aws_x"` and `ephemeral "aws_x"`
// block headers in Terraform files.
var blockRE = regexp.MustCompile(`(?m)^\s*(resource|data|ephemeral)\s+"([a-z0-9_]+)"`)

// runExtract writes the subset of a full provider schema that the Terraform
// files under the given directories use: the provider block plus every
// resource, data source and ephemeral resource type they declare.
func runExtract(args []string) error {
	fl := flag.NewFlagSet("extract", flag.ContinueOnError)
	in := fl.String("in", "", "full `terraform providers schema -json` output (.json or .json.gz)")
	out := fl.String("out", "", "output file (.json.gz is gzipped)")
	prefix := fl.String("prefix", "aws_", "type name prefix of the provider")
	patchFile := fl.String("patch", "", "JSON file of attributes to add: {kind: {type: {attr: attribute}}}")
	if err := fl.Parse(args); err != nil {
		return err
	}
	if *in == "" || *out == "" || fl.NArg() == 0 {
		return errors.New("usage: schemaprovider extract -in FULL -out PART [-prefix aws_] DIR...")
	}
	raw, err := os.ReadFile(*in)
	if err != nil {
		return fmt.Errorf("reading full schema: %w", err)
	}
	if raw, err = maybeGunzip(raw); err != nil {
		return err
	}
	used, err := usedTypes(fl.Args(), *prefix)
	if err != nil {
		return err
	}
	part, err := extract(raw, used)
	if err != nil {
		return err
	}
	if *patchFile != "" {
		if err := applyPatch(part, *patchFile); err != nil {
			return err
		}
	}
	return writeSchema(*out, part)
}

// usedTypes scans *.tf files for block headers, keyed by block kind.
func usedTypes(dirs []string, prefix string) (map[string]map[string]bool, error) {
	used := map[string]map[string]bool{"resource": {}, "data": {}, "ephemeral": {}}
	for _, dir := range dirs {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() && strings.HasPrefix(d.Name(), ".") && path != dir {
				return filepath.SkipDir
			}
			if d.IsDir() || !strings.HasSuffix(path, ".tf") {
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return fmt.Errorf("reading %s: %w", path, err)
			}
			for _, m := range blockRE.FindAllSubmatch(b, -1) {
				if name := string(m[2]); strings.HasPrefix(name, prefix) {
					used[string(m[1])][name] = true
				}
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("scanning %s: %w", dir, err)
		}
	}
	return used, nil
}

func extract(full []byte, used map[string]map[string]bool) (*schemasJSON, error) {
	var doc schemasJSON
	if err := json.Unmarshal(full, &doc); err != nil {
		return nil, fmt.Errorf("decoding full schema: %w", err)
	}
	if len(doc.ProviderSchemas) != 1 {
		return nil, fmt.Errorf("want one provider in the full schema, got %d", len(doc.ProviderSchemas))
	}
	part := &schemasJSON{FormatVersion: doc.FormatVersion, ProviderSchemas: map[string]*providerJSON{}}
	var errs []error
	for addr, p := range doc.ProviderSchemas {
		np := &providerJSON{
			Provider:          p.Provider,
			ResourceSchemas:   pick(p.ResourceSchemas, used["resource"], "resource", &errs),
			DataSourceSchemas: pick(p.DataSourceSchemas, used["data"], "data source", &errs),
			EphemeralSchemas:  pick(p.EphemeralSchemas, used["ephemeral"], "ephemeral resource", &errs),
		}
		part.ProviderSchemas[addr] = np
	}
	return part, errors.Join(errs...)
}

func pick(all map[string]*schemaJSON, want map[string]bool, kind string, errs *[]error) map[string]*schemaJSON {
	out := map[string]*schemaJSON{}
	for _, name := range sortedKeys(want) {
		s, ok := all[name]
		if !ok {
			*errs = append(*errs, fmt.Errorf("%s %s is not in the full schema", kind, name))
			continue
		}
		out[name] = s
	}
	return out
}

// writeSchema writes indented JSON (stable: map keys are sorted), gzipped
// without a name or time in the header when the file name ends in .gz.
func writeSchema(path string, doc *schemasJSON) error {
	b, err := json.MarshalIndent(doc, "", " ")
	if err != nil {
		return fmt.Errorf("encoding schema: %w", err)
	}
	b = append(b, '\n')
	if strings.HasSuffix(path, ".gz") {
		var buf bytes.Buffer
		zw, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		if _, err := zw.Write(b); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		if err := zw.Close(); err != nil {
			return fmt.Errorf("gzip: %w", err)
		}
		b = buf.Bytes()
	}
	if err := os.WriteFile(path, b, 0o644); err != nil {
		return fmt.Errorf("writing %s: %w", path, err)
	}
	return nil
}

// applyPatch adds attributes that the full schema data lacks. It refuses to
// replace an existing attribute, so a corrected data file is noticed.
// Patches for types the code does not use are skipped.
func applyPatch(doc *schemasJSON, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("reading patch: %w", err)
	}
	var patch map[string]json.RawMessage
	if err := json.Unmarshal(b, &patch); err != nil {
		return fmt.Errorf("decoding patch %s: %w", path, err)
	}
	var errs []error
	for _, p := range doc.ProviderSchemas {
		kinds := map[string]map[string]*schemaJSON{
			"resource_schemas":           p.ResourceSchemas,
			"data_source_schemas":        p.DataSourceSchemas,
			"ephemeral_resource_schemas": p.EphemeralSchemas,
		}
		for kind, raw := range patch {
			if strings.HasPrefix(kind, "_") {
				continue // comment
			}
			schemas, ok := kinds[kind]
			if !ok {
				errs = append(errs, fmt.Errorf("patch: unknown kind %q", kind))
				continue
			}
			var types map[string]map[string]*attributeJSON
			if err := json.Unmarshal(raw, &types); err != nil {
				return fmt.Errorf("decoding patch %s: %s: %w", path, kind, err)
			}
			for typeName, attrs := range types {
				s, ok := schemas[typeName]
				if !ok {
					continue
				}
				if s.Block.Attributes == nil {
					s.Block.Attributes = map[string]*attributeJSON{}
				}
				for name, a := range attrs {
					if _, exists := s.Block.Attributes[name]; exists {
						errs = append(errs, fmt.Errorf("patch: %s.%s already exists in the schema data: drop it from %s", typeName, name, path))
						continue
					}
					s.Block.Attributes[name] = a
				}
			}
		}
	}
	return errors.Join(errs...)
}
