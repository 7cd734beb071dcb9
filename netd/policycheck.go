package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/policy"
)

func newPolicyCheckCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "check FILE",
		Short: "validate a policy file; list every problem",
		Long: `Loads, validates and compiles the policy file and lists every problem with
its position (file:line:column) and a hint. -o json and -o yaml print an
array of {file, line, column, path, message, hint} (empty when valid), for
CI annotations.

Exit status: 0 valid, 1 invalid, 2 usage, 3 FILE could not be read.`,
		Example: `  netd policy check examples/ducksnest/policy.yaml
  netd policy check -o json policy.yaml
  kubectl get cm netd-policy -o jsonpath='{.data.policy\.yaml}' | netd policy check -`,
	}
	fileArg(cmd)
	addOutputFlag(cmd, &output, "text", "text", "json", "yaml")
	addFormatAlias(cmd, &output, "text", "json")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		stdout := cmd.OutOrStdout()
		f, s, err := compileFile(pos[0], cmd.InOrStdin())
		var l policy.ErrorList
		if err != nil {
			l = problems(pos[0], err)
		}
		switch {
		case output != "text":
			if l == nil {
				l = policy.ErrorList{}
			}
			if werr := writeStructured(stdout, output, l); werr != nil {
				return werr
			}
		case err != nil:
			printProblems(stdout, l)
		default:
			fmt.Fprintf(stdout, "%s: ok: %d nodes, %d IP pools, pod MTU %d, %s\n", f.Source(), len(s.Nodes), len(s.Calico.IPPools), s.PodMTU, s.Digest)
		}
		if err != nil {
			return policyExit(err)
		}
		return nil
	}
	return cmd
}
