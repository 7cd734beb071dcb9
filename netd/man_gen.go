//go:build mangen

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
	"github.com/spf13/pflag"
)

// addManCommand adds the hidden `netd gen-man DIR` (go generate runs it).
func addManCommand(root *cobra.Command) {
	root.AddCommand(&cobra.Command{
		Use:    "gen-man DIR",
		Short:  "write the man pages of every command to DIR",
		Hidden: true,
		Args:   exactArgs(1, "DIR"),
		RunE: func(cmd *cobra.Command, args []string) error {
			return genMan(args[0])
		},
	})
}

// genMan writes one page per command, the same on every machine: the tree
// is built again without the NETD_* variables that set flag defaults, the
// host name standing for itself is replaced, and the pages carry no date.
func genMan(dir string) error {
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); strings.HasPrefix(k, "NETD_") {
			os.Unsetenv(k)
		}
	}
	root := newRootCmd(streams{in: os.Stdin, out: os.Stdout, err: os.Stderr})
	host, _ := os.Hostname()
	var fix func(c *cobra.Command)
	fix = func(c *cobra.Command) {
		c.DisableAutoGenTag = true
		c.Flags().VisitAll(func(f *pflag.Flag) {
			if host != "" && f.DefValue == host {
				f.DefValue = "the host name"
			}
		})
		for _, s := range c.Commands() {
			fix(s)
		}
	}
	fix(root)
	old, err := filepath.Glob(filepath.Join(dir, "netd*.1"))
	if err != nil {
		return err
	}
	for _, p := range old {
		if err := os.Remove(p); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	var zero time.Time
	var pages func(c *cobra.Command) error
	pages = func(c *cobra.Command) error {
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() && !s.IsAdditionalHelpTopicCommand() {
				if err := pages(s); err != nil {
					return err
				}
			}
		}
		var b bytes.Buffer
		h := &doc.GenManHeader{Title: strings.ToUpper(strings.ReplaceAll(c.CommandPath(), " ", "-")), Section: "1",
			Date: &zero, Source: "netd", Manual: "netd manual"}
		if err := doc.GenMan(c, h, &b); err != nil {
			return fmt.Errorf("man page of %s: %w", c.CommandPath(), err)
		}
		page := thDate.ReplaceAll(b.Bytes(), []byte(`$1""`))
		name := strings.ReplaceAll(c.CommandPath(), " ", "-") + ".1"
		return os.WriteFile(filepath.Join(dir, name), page, 0o644)
	}
	return pages(root)
}

// thDate is the date field of the .TH line (from the zero time).
var thDate = regexp.MustCompile(`(?m)^(\.TH "[^"]*" "1" )"Jan 0001"`)
