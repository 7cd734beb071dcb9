package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/netd/buildinfo"
)

func newVersionCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "version",
		Short: "print netd's version, Go version and source revision",
		Long: `Prints the version of this netd binary, the Go release that built it and
the source revision (from the build information Go embeds; "unknown" for a
build without version control data). A running daemon exports the same as
the netd_build_info metric.`,
		Args: noArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			in := buildinfo.Get()
			if output != "text" {
				return writeStructured(cmd.OutOrStdout(), output, in)
			}
			rev := in.Revision
			if in.Modified {
				rev += " (modified)"
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "netd %s\n  go:       %s %s\n  revision: %s\n", in.Version, in.GoVersion, in.Platform, rev)
			if in.Time != "" {
				fmt.Fprintf(w, "  time:     %s\n", in.Time)
			}
			return nil
		},
	}
	addOutputFlag(cmd, &output, "text", "text", "json", "yaml")
	return cmd
}
