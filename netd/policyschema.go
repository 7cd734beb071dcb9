package main

import (
	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/policy"
)

func newPolicySchemaCmd() *cobra.Command {
	return &cobra.Command{
		Use:     "schema",
		Short:   "print the JSON Schema of the policy file (for editors)",
		Args:    noArgs,
		Example: `  netd policy schema > policy.schema.json`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			b, err := policy.Schema()
			if err != nil {
				return err
			}
			_, err = cmd.OutOrStdout().Write(b)
			return err
		},
	}
}
