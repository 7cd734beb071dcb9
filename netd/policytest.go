package main

import (
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/acldoc"
	"github.com/ducksnest/netd/policy/desired"
)

// testResult is one assertion in `netd policy test -o json|yaml`.
type testResult struct {
	Result    string `json:"result"` // ok or FAIL
	Where     string `json:"where"`
	Src       string `json:"src"`
	Proto     string `json:"proto"`
	Dst       string `json:"dst"`
	Want      string `json:"want"`
	Got       string `json:"got"`
	Reason    string `json:"reason"`
	Generated string `json:"generated,omitempty"`
}

// testReport is `netd policy test -o json|yaml`.
type testReport struct {
	Assertions int          `json:"assertions"`
	Passed     int          `json:"passed"`
	Failed     int          `json:"failed"`
	Results    []testResult `json:"results"`
}

func newPolicyTestCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "test FILE",
		Short: "run the tailnet policy's tests offline",
		Long: `Evaluates the tests of the tailnet policy (spec.tailnet.tests and
sshTests, plus the tests netd generates) against the rendered policy,
offline, with a documented subset of Tailscale's semantics (-v prints it).
Text output lists the failures (-v: every assertion); -o json and -o yaml
list every assertion.

Exit status: 0 all pass, 1 a test failed or the policy is invalid,
2 usage, 3 FILE could not be read.`,
	}
	fileArg(cmd)
	verbose := cmd.Flags().BoolP("verbose", "v", false, "also print every passing assertion's reason and the evaluator's semantics")
	addOutputFlag(cmd, &output, "text", "text", "json", "yaml")
	cmd.RunE = func(cmd *cobra.Command, pos []string) error {
		stdout, stderr := cmd.OutOrStdout(), cmd.ErrOrStderr()
		f, s, err := compileFile(pos[0], cmd.InOrStdin())
		if err != nil {
			printProblems(stderr, problems(pos[0], err))
			return policyExit(err)
		}
		// The compiler evaluated exactly what would be pushed: the rendered
		// document.
		results := s.Tailnet.Tailscale.Tests
		rep := testReport{Assertions: len(results), Results: []testResult{}}
		for _, r := range results {
			res := "ok"
			if !r.OK {
				res, rep.Failed = "FAIL", rep.Failed+1
			}
			rep.Results = append(rep.Results, testResult{Result: res, Where: where(f, r), Src: r.Src, Proto: r.Proto,
				Dst: r.Dst, Want: r.Want, Got: r.Got, Reason: r.Reason, Generated: r.Generated})
		}
		rep.Passed = rep.Assertions - rep.Failed
		if output != "text" {
			if err := writeStructured(stdout, output, rep); err != nil {
				return err
			}
		} else {
			tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "RESULT\tWHERE\tSRC\tPROTO\tDST\tWANT\tGOT\tREASON")
			for _, r := range rep.Results {
				if r.Result == "ok" && !*verbose {
					continue
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Result, r.Where, r.Src, r.Proto, r.Dst, r.Want, r.Got, r.Reason)
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%d assertions, %d passed, %d failed\n", rep.Assertions, rep.Passed, rep.Failed)
			if *verbose {
				fmt.Fprintf(stdout, "\n%s\n", acldoc.Semantics())
			}
		}
		if rep.Failed > 0 {
			return exitError{1}
		}
		return nil
	}
	return cmd
}

// where names the file position of a test assertion, or says that netd
// generated the test.
func where(f *policy.File, r desired.TailnetTest) string {
	path := r.Path
	if r.Generated != "" {
		top := path
		if i := strings.Index(top, "]"); i >= 0 {
			top = top[:i+1] // tests[3].accept[1] -> tests[3]
		}
		return "generated:" + top
	}
	p := f.Position("spec.tailnet." + path)
	return fmt.Sprintf("%s:%d:%d", f.Source(), p.Line, p.Col)
}
