package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
)

// newPolicyCmd is `netd policy`: its subcommands are in policy*.go and
// applycmd.go.
func newPolicyCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "policy",
		Short: "check, render and test the policy file",
		Long: `Checks, renders, tests and applies the policy file: one YAML file that
describes the nodes, BGP, routing, Calico and the tailnet policy. FILE is a
path, or - for standard input; files over 4 MiB are refused.

Exit status: 0 success, 1 an invalid policy or failing tests, 2 usage,
3 FILE could not be read (policy diff differs: see its --help).`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newPolicyCheckCmd(), newPolicyRenderCmd(), newPolicySchemaCmd(), newPolicyTestCmd(),
		newPolicyDiffCmd(), newPolicyApplyCmd())
	return cmd
}

// fileArg is FILE of the policy commands: one policy file, completed in
// shells among YAML and JSON files.
func fileArg(cmd *cobra.Command) {
	cmd.Args = exactArgs(1, "FILE (a policy file, or - for standard input)")
	cmd.ValidArgsFunction = func(_ *cobra.Command, args []string, _ string) ([]string, cobra.ShellCompDirective) {
		if len(args) > 0 {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return []string{"yaml", "yml", "json"}, cobra.ShellCompDirectiveFilterFileExt
	}
}

// loadPolicy loads the policy file at path, or standard input for "-".
func loadPolicy(path string, stdin io.Reader) (*policy.File, error) {
	if path == "-" {
		return policy.LoadReader("<stdin>", stdin)
	}
	return policy.LoadFile(path)
}

// compileFile loads and compiles a policy file ("-": standard input).
func compileFile(path string, stdin io.Reader) (*policy.File, *desired.State, error) {
	f, err := loadPolicy(path, stdin)
	if err != nil {
		return nil, nil, err
	}
	s, err := policy.Compile(f)
	return f, s, err
}

// compileSource loads and compiles a policy from memory; name is what
// positions in errors are reported against.
func compileSource(name string, src []byte) (*desired.State, error) {
	f, err := policy.Load(name, src)
	if err != nil {
		return nil, err
	}
	return policy.Compile(f)
}

// problems turns a load or compile error into positioned problems.
func problems(path string, err error) policy.ErrorList {
	var l policy.ErrorList
	if errors.As(err, &l) {
		return l
	}
	var re *policy.ReadError
	if errors.As(err, &re) {
		msg := re.Err.Error()
		var pe *fs.PathError
		if errors.As(re.Err, &pe) {
			msg = pe.Err.Error()
		}
		return policy.ErrorList{{File: re.Path, Msg: "cannot read the file: " + msg}}
	}
	return policy.ErrorList{{File: path, Msg: err.Error()}}
}

// printProblems writes every problem to w, one per line, and a count.
func printProblems(w io.Writer, l policy.ErrorList) {
	for _, e := range l {
		fmt.Fprintln(w, e.Error())
	}
	noun := "problems"
	if len(l) == 1 {
		noun = "problem"
	}
	fmt.Fprintf(w, "%d %s found\n", len(l), noun)
}
