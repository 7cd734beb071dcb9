package monitoring_test

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/ducksnest/netd/examples"
	"github.com/ducksnest/netd/netd/daemon"
	"github.com/ducksnest/netd/netd/routes/nl"
)

const promPkg = "github.com/prometheus/client_golang/prometheus"

// optsKinds are the option structs of client_golang that name a metric,
// with the suffixes of the series a metric of that kind exports ("": the
// name itself; a histogram has no series of its bare name).
var optsKinds = map[string][]string{
	"CounterOpts": {""}, "GaugeOpts": {""}, "UntypedOpts": {""}, "Opts": {""},
	"HistogramOpts": {"_bucket", "_sum", "_count"},
	"SummaryOpts":   {"", "_sum", "_count"},
}

// definedMetrics reads every non-test Go file of the module under root and
// returns the series names of the metrics it defines (a name literal in a
// prometheus.*Opts or the first argument of prometheus.NewDesc), each with
// its position. A definition the reader cannot resolve (a name that is not
// a string literal, Namespace or Subsystem) is an error: the check must
// never miss a metric silently.
func definedMetrics(root string) (map[string]string, error) {
	out := map[string]string{}
	var errs []string
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); path != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor" || name == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		local := ""
		for _, im := range f.Imports {
			if p, _ := strconv.Unquote(im.Path.Value); p == promPkg {
				local = "prometheus"
				if im.Name != nil {
					local = im.Name.Name
				}
			}
		}
		if local == "" {
			return nil
		}
		isProm := func(e ast.Expr) (string, bool) {
			sel, ok := e.(*ast.SelectorExpr)
			if !ok {
				return "", false
			}
			id, ok := sel.X.(*ast.Ident)
			return sel.Sel.Name, ok && id.Name == local
		}
		add := func(lit ast.Expr, suffixes []string) {
			pos := fset.Position(lit.Pos()).String()
			rel, _ := filepath.Rel(root, pos)
			bl, ok := lit.(*ast.BasicLit)
			if !ok || bl.Kind != token.STRING {
				errs = append(errs, fmt.Sprintf("%s: the metric name is not a string literal: the check cannot read it", rel))
				return
			}
			name, _ := strconv.Unquote(bl.Value)
			for _, s := range suffixes {
				out[name+s] = rel
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.CompositeLit:
				kind, ok := isProm(n.Type)
				suffixes, known := optsKinds[kind]
				if !ok || !known {
					return true
				}
				var name ast.Expr
				for _, el := range n.Elts {
					kv, ok := el.(*ast.KeyValueExpr)
					if !ok {
						continue
					}
					switch key := kv.Key.(*ast.Ident); key.Name {
					case "Name":
						name = kv.Value
					case "Namespace", "Subsystem":
						errs = append(errs, fmt.Sprintf("%s: %s is set: the check reads only whole names", fset.Position(kv.Pos()), key.Name))
					}
				}
				if name == nil {
					errs = append(errs, fmt.Sprintf("%s: prometheus.%s without a Name", fset.Position(n.Pos()), kind))
					return true
				}
				add(name, suffixes)
			case *ast.CallExpr:
				if fn, ok := isProm(n.Fun); ok && fn == "NewDesc" && len(n.Args) > 0 {
					add(n.Args[0], []string{""})
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(errs) > 0 {
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// gatheredMetrics builds netd's daemon in-process, as `netd run` does with
// every optional part that registers metrics when it is built (Calico with
// the Lease, Tailscale, BFD), and returns the series names of what its
// registry gathers: the Go runtime's and the process's metrics, and netd's
// own that have a value before it runs. Nothing is started or contacted.
func gatheredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	dir := t.TempDir()
	policy := filepath.Join(dir, "policy.yaml")
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(policy, examples.Ducksnest, 0o600); err != nil {
		t.Fatal(err)
	}
	// Never contacted: the daemon is built, not run.
	if err := os.WriteFile(kubeconfig, []byte(`apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: x, context: {cluster: c, user: u}}]
current-context: x
`), 0o600); err != nil {
		t.Fatal(err)
	}
	reg := daemon.NewRegistry()
	_, err := daemon.New(daemon.Config{
		PolicyPath: policy, Node: "firebat", Log: slog.New(slog.DiscardHandler), Registry: reg,
		Kernel:     nl.NewFake("tailscale0", "eth0"),
		Kubeconfig: kubeconfig, SyncCalico: true,
		TailscaleSocket: filepath.Join(dir, "tailscaled.sock"),
		BFD:             daemon.BFDConfig{Enabled: true},
	})
	if err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatalf("gathering the daemon's registry: %v", err)
	}
	out := map[string]bool{}
	for _, mf := range mfs {
		name := mf.GetName()
		// By the type's name: the test then needs no import of
		// client_model (an indirect module of netd).
		switch mf.GetType().String() {
		case "HISTOGRAM", "GAUGE_HISTOGRAM":
			out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
		case "SUMMARY":
			out[name], out[name+"_sum"], out[name+"_count"] = true, true, true
		default:
			out[name] = true
		}
	}
	return out
}

// exportedMetrics is every series name netd exports: the names its code
// defines, and the runtime and process metrics its registry gathers. The
// two sources must agree on netd's own: a netd_ series the registry
// gathers must be one the reader of the code found.
func exportedMetrics(t *testing.T) map[string]string {
	t.Helper()
	defined, err := definedMetrics(filepath.Join("..", ".."))
	if err != nil {
		t.Fatalf("reading the metric definitions: %v", err)
	}
	out := map[string]string{}
	for n, pos := range defined {
		if strings.HasPrefix(n, "netd_") {
			out[n] = pos
		}
	}
	for n := range gatheredMetrics(t) {
		switch {
		case strings.HasPrefix(n, "netd_"):
			if _, ok := defined[n]; !ok {
				t.Errorf("the daemon's registry gathers %s, which the reader of the code did not find", n)
			}
		case strings.HasPrefix(n, "go_") || strings.HasPrefix(n, "process_") || strings.HasPrefix(n, "promhttp_"):
			out[n] = "daemon.NewRegistry"
		default:
			t.Errorf("the daemon's registry gathers %s, neither netd_ nor the runtime's or process's", n)
		}
	}
	return out
}
