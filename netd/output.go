package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"go.yaml.in/yaml/v3"
)

// The output flag, as kubectl has it: -o/--output text|json|yaml on every
// command that prints a report. JSON and YAML carry the same keys.

// enumValue is a string flag that takes one of a fixed set of values; a
// different value is a usage error when the flag is parsed.
type enumValue struct {
	p       *string
	allowed []string
}

func (e enumValue) String() string { return *e.p }

func (e enumValue) Set(s string) error {
	for _, a := range e.allowed {
		if s == a {
			*e.p = s
			return nil
		}
	}
	return fmt.Errorf("want %s", orList(e.allowed))
}

func (e enumValue) Type() string { return "string" }

// orList joins "a", "b", "c" as "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// addEnumFlag adds a string flag limited to allowed, completed in shells.
func addEnumFlag(cmd *cobra.Command, p *string, name, short, def, usage string, allowed ...string) *pflag.Flag {
	*p = def
	f := cmd.Flags().VarPF(enumValue{p: p, allowed: allowed}, name, short, usage)
	_ = cmd.RegisterFlagCompletionFunc(name, cobra.FixedCompletions(allowed, cobra.ShellCompDirectiveNoFileComp))
	return f
}

// addOutputFlag adds -o/--output with the formats a command prints.
func addOutputFlag(cmd *cobra.Command, p *string, def string, formats ...string) {
	addEnumFlag(cmd, p, "output", "o", def, "output format: "+orList(formats), formats...)
}

// addFormatAlias adds --format, the flag's old name, as a deprecated alias
// of -o.
func addFormatAlias(cmd *cobra.Command, p *string, formats ...string) {
	f := cmd.Flags().VarPF(enumValue{p: p, allowed: formats}, "format", "", "deprecated: use -o")
	f.DefValue = *p
	deprecate(f, "use -o/--output")
}

// deprecate hides a flag kept for old command lines; using it prints a
// warning on standard error (warnDeprecated). pflag's own MarkDeprecated
// would print it with the command's output.
func deprecate(f *pflag.Flag, instead string) {
	f.Hidden = true
	if f.Annotations == nil {
		f.Annotations = map[string][]string{}
	}
	f.Annotations[deprecatedKey] = []string{instead}
}

const deprecatedKey = "netd_deprecated"

// warnDeprecated warns about every deprecated flag on the command line.
func warnDeprecated(cmd *cobra.Command, _ []string) {
	cmd.Flags().Visit(func(f *pflag.Flag) {
		if v, ok := f.Annotations[deprecatedKey]; ok {
			fmt.Fprintf(cmd.ErrOrStderr(), "%s: --%s is deprecated: %s\n", cmd.CommandPath(), f.Name, v[0])
		}
	})
}

// jsonAlias is the deprecated boolean --json: -o json.
type jsonAlias struct{ p *string }

func (j jsonAlias) String() string { return fmt.Sprint(*j.p == "json") }

func (j jsonAlias) Set(s string) error {
	switch s {
	case "true":
		*j.p = "json"
	case "false":
	default:
		return fmt.Errorf("want true or false")
	}
	return nil
}

func (j jsonAlias) Type() string { return "bool" }

// addJSONAlias adds --json as a deprecated alias of -o json.
func addJSONAlias(cmd *cobra.Command, p *string) {
	f := cmd.Flags().VarPF(jsonAlias{p: p}, "json", "", "deprecated: use -o json")
	f.NoOptDefVal = "true"
	f.DefValue = "false"
	deprecate(f, "use -o json")
}

// writeStructured writes v as indented JSON or as YAML with the same keys
// in the same order.
func writeStructured(w io.Writer, format string, v any) error {
	j, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding %s: %w", format, err)
	}
	return writeJSONAs(w, format, j)
}

// writeJSONAs writes a JSON document as JSON or YAML.
func writeJSONAs(w io.Writer, format string, j []byte) error {
	if format == "yaml" {
		y, err := jsonToYAML(j)
		if err != nil {
			return err
		}
		_, err = w.Write(y)
		return err
	}
	if len(j) > 0 && j[len(j)-1] != '\n' {
		j = append(j, '\n')
	}
	_, err := w.Write(j)
	return err
}

// jsonToYAML converts a JSON document to block-style YAML. JSON is YAML,
// so decoding it into a node tree keeps the key order.
func jsonToYAML(j []byte) ([]byte, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(j, &doc); err != nil {
		return nil, fmt.Errorf("converting to YAML: %w", err)
	}
	styleBlock(&doc)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("encoding YAML: %w", err)
	}
	return b.Bytes(), nil
}

// styleBlock turns the flow style and quoting inherited from JSON into
// plain block YAML.
func styleBlock(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		styleBlock(c)
	}
}
