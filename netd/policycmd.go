package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/acldoc"
	"github.com/ducksnest/netd/policy/desired"
)

func init() {
	commands["policy"] = command{summary: "check, render and test the policy file", run: runPolicy}
}

const policyUsage = `usage:
  netd policy check FILE [--format text|json]   validate; exit 1 listing every problem
  netd policy render FILE --calico | --tailnet | --node NAME [--format yaml|json] | --state
  netd policy schema                            print the JSON Schema of the policy file
  netd policy test FILE [-v]                    run the tailnet policy tests offline
  netd policy diff FILE [--kubeconfig K]        what would change in the cluster (Calico)
  netd policy apply FILE [--kubeconfig K]       apply it, with optimistic concurrency
`

func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return exitError{2}
	}
	switch args[0] {
	case "check":
		return policyCheck(args[1:], stdout, stderr)
	case "render":
		return policyRender(args[1:], stdout, stderr)
	case "schema":
		return policySchema(args[1:], stdout, stderr)
	case "test":
		return policyTest(args[1:], stdout, stderr)
	case "diff": // applycmd.go
		return policyDiff(ctx, args[1:], stdout, stderr)
	case "apply": // applycmd.go
		return policyApply(ctx, args[1:], stdout, stderr)
	case "-h", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	fmt.Fprintf(stderr, "netd policy: unknown subcommand %q\n\n%s", args[0], policyUsage)
	return exitError{2}
}

// parseArgs parses flags that may come before or after the positional
// arguments ("check FILE --format json" as well as "check --format json FILE").
func parseArgs(fs *flag.FlagSet, args []string, nPos int) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			break
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
	if len(pos) != nPos {
		return nil, fmt.Errorf("want %d argument(s), got %d: %q", nPos, len(pos), pos)
	}
	return pos, nil
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("netd policy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, policyUsage) }
	return fs
}

// usageError reports bad arguments with exit status 2.
func usageError(stderr io.Writer, err error) error {
	if !errors.Is(err, flag.ErrHelp) {
		fmt.Fprintf(stderr, "netd policy: %v\n\n%s", err, policyUsage)
	}
	return exitError{2}
}

// compileFile loads and compiles a policy file.
func compileFile(path string) (*policy.File, *desired.State, error) {
	f, err := policy.LoadFile(path)
	if err != nil {
		return nil, nil, err
	}
	s, err := policy.Compile(f)
	return f, s, err
}

// problems turns a load or compile error into positioned problems.
func problems(path string, err error) policy.ErrorList {
	var l policy.ErrorList
	if errors.As(err, &l) {
		return l
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

func policyCheck(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("check", stderr)
	format := fs.String("format", "text", "output format: text or json (an array of {file,line,column,path,message,hint})")
	pos, err := parseArgs(fs, args, 1)
	if err == nil && *format != "text" && *format != "json" {
		err = fmt.Errorf("--format must be text or json, not %q", *format)
	}
	if err != nil {
		return usageError(stderr, err)
	}
	_, s, err := compileFile(pos[0])
	var l policy.ErrorList
	if err != nil {
		l = problems(pos[0], err)
	}
	if *format == "json" {
		if l == nil {
			l = policy.ErrorList{}
		}
		b, jerr := json.MarshalIndent(l, "", "  ")
		if jerr != nil {
			return fmt.Errorf("encoding problems: %w", jerr)
		}
		fmt.Fprintf(stdout, "%s\n", b)
	} else if err != nil {
		printProblems(stdout, l)
	} else {
		fmt.Fprintf(stdout, "%s: ok: %d nodes, %d IP pools, pod MTU %d, %s\n", pos[0], len(s.Nodes), len(s.Calico.IPPools), s.PodMTU, s.Digest)
	}
	if err != nil {
		return exitError{1}
	}
	return nil
}

func policyRender(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("render", stderr)
	cal := fs.Bool("calico", false, "Calico manifests (IPPools, IPAMConfiguration, FelixConfiguration, BGPConfiguration)")
	calAPI := fs.String("calico-api", "v3", "with --calico: v3 (projectcalico.org/v3, for calicoctl or kubectl) or v1 (crd.projectcalico.org/v1, a cluster without v3)")
	tn := fs.Bool("tailnet", false, "the tailnet policy as HuJSON")
	node := fs.String("node", "", "the desired state of one node")
	state := fs.Bool("state", false, "the whole desired state as JSON")
	format := fs.String("format", "yaml", "format of --node: yaml or json")
	pos, err := parseArgs(fs, args, 1)
	if err == nil {
		n := 0
		for _, b := range []bool{*cal, *tn, *node != "", *state} {
			if b {
				n++
			}
		}
		switch {
		case n != 1:
			err = errors.New("choose exactly one of --calico, --tailnet, --node NAME, --state")
		case *calAPI != "v3" && *calAPI != "v1":
			err = fmt.Errorf("--calico-api must be v3 or v1, not %q", *calAPI)
		case *format != "yaml" && *format != "json":
			err = fmt.Errorf("--format must be yaml or json, not %q", *format)
		}
	}
	if err != nil {
		return usageError(stderr, err)
	}
	_, s, err := compileFile(pos[0])
	if err != nil {
		printProblems(stderr, problems(pos[0], err))
		return exitError{1}
	}
	var out []byte
	switch {
	case *cal:
		gv := calico.V3
		if *calAPI == "v1" {
			gv = calico.V1
		}
		out, err = calico.Render(s, gv)
	case *tn:
		out = s.Tailnet.Tailscale.HuJSON
	case *state:
		out, err = json.MarshalIndent(s, "", "  ")
		out = append(out, '\n')
	default:
		var n *desired.Node
		if n, err = s.Node(*node); err == nil {
			out, err = encodeNode(n, *format)
		}
	}
	if err != nil {
		return err
	}
	_, err = stdout.Write(out)
	return err
}

// encodeNode writes a node as JSON, or as YAML with the same keys (JSON is
// YAML, so decoding it into a node tree keeps the key order).
func encodeNode(n *desired.Node, format string) ([]byte, error) {
	j, err := json.MarshalIndent(n, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encoding node: %w", err)
	}
	if format == "json" {
		return append(j, '\n'), nil
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(j, &doc); err != nil {
		return nil, fmt.Errorf("converting node to YAML: %w", err)
	}
	styleBlock(&doc)
	var b bytes.Buffer
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return nil, fmt.Errorf("encoding node as YAML: %w", err)
	}
	return b.Bytes(), enc.Close()
}

// styleBlock turns the flow style and quoting inherited from JSON into
// plain block YAML.
func styleBlock(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		styleBlock(c)
	}
}

func policySchema(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("schema", stderr)
	if _, err := parseArgs(fs, args, 0); err != nil {
		return usageError(stderr, err)
	}
	b, err := policy.Schema()
	if err != nil {
		return err
	}
	_, err = stdout.Write(b)
	return err
}

func policyTest(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("test", stderr)
	verbose := fs.Bool("v", false, "also print every passing assertion's reason and the evaluator's semantics")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		return usageError(stderr, err)
	}
	f, s, err := compileFile(pos[0])
	if err != nil {
		printProblems(stderr, problems(pos[0], err))
		return exitError{1}
	}
	// The compiler evaluated exactly what would be pushed: the rendered
	// document.
	results := s.Tailnet.Tailscale.Tests
	failed := 0
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tWHERE\tSRC\tPROTO\tDST\tWANT\tGOT\tREASON")
	for _, r := range results {
		res := "ok"
		if !r.OK {
			res, failed = "FAIL", failed+1
		}
		if r.OK && !*verbose {
			continue
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", res, where(f, r), r.Src, r.Proto, r.Dst, r.Want, r.Got, r.Reason)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%d assertions, %d passed, %d failed\n", len(results), len(results)-failed, failed)
	if *verbose {
		fmt.Fprintf(stdout, "\n%s\n", acldoc.Semantics())
	}
	if failed > 0 {
		return exitError{1}
	}
	return nil
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
