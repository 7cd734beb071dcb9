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
	"slices"
	"sort"
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
// returns the series names of the metrics it defines (the Name of a
// prometheus.*Opts or the first argument of prometheus.NewDesc: a string
// literal, or a string constant of the same package), each with its
// position. A definition the reader cannot resolve (another expression,
// Namespace or Subsystem) is an error: the check must never miss a metric
// silently.
func definedMetrics(root string) (map[string]string, error) {
	fset := token.NewFileSet()
	pkgs := map[string][]*ast.File{} // by directory
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
		pkgs[filepath.Dir(path)] = append(pkgs[filepath.Dir(path)], f)
		return nil
	})
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	var errs []string
	for _, files := range pkgs {
		consts := stringConsts(files)
		for _, f := range files {
			errs = append(errs, fileMetrics(fset, root, f, consts, out)...)
		}
	}
	if len(errs) > 0 {
		sort.Strings(errs)
		return nil, fmt.Errorf("%s", strings.Join(errs, "\n"))
	}
	return out, nil
}

// stringConsts returns the package-level string constants of a package.
func stringConsts(files []*ast.File) map[string]string {
	out := map[string]string{}
	for _, f := range files {
		for _, decl := range f.Decls {
			gd, ok := decl.(*ast.GenDecl)
			if !ok || gd.Tok != token.CONST {
				continue
			}
			for _, spec := range gd.Specs {
				vs := spec.(*ast.ValueSpec)
				for i, name := range vs.Names {
					if i < len(vs.Values) {
						if bl, ok := vs.Values[i].(*ast.BasicLit); ok && bl.Kind == token.STRING {
							out[name.Name], _ = strconv.Unquote(bl.Value)
						}
					}
				}
			}
		}
	}
	return out
}

// fileMetrics adds the metrics one file defines to out and returns what it
// could not read.
func fileMetrics(fset *token.FileSet, root string, f *ast.File, consts map[string]string, out map[string]string) []string {
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
	var errs []string
	where := func(p token.Pos) string {
		pos := fset.Position(p)
		rel, err := filepath.Rel(root, pos.Filename)
		if err != nil {
			rel = pos.Filename
		}
		return fmt.Sprintf("%s:%d", rel, pos.Line)
	}
	isProm := func(e ast.Expr) (string, bool) {
		sel, ok := e.(*ast.SelectorExpr)
		if !ok {
			return "", false
		}
		id, ok := sel.X.(*ast.Ident)
		return sel.Sel.Name, ok && id.Name == local
	}
	add := func(e ast.Expr, suffixes []string) {
		var name string
		switch e := e.(type) {
		case *ast.BasicLit:
			if e.Kind == token.STRING {
				name, _ = strconv.Unquote(e.Value)
			}
		case *ast.Ident:
			name = consts[e.Name]
		}
		if name == "" {
			errs = append(errs, fmt.Sprintf("%s: the metric name is neither a string literal nor a string constant of the package: the check cannot read it", where(e.Pos())))
			return
		}
		for _, s := range suffixes {
			out[name+s] = where(e.Pos())
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
					errs = append(errs, fmt.Sprintf("%s: %s is set: the check reads only whole names", where(kv.Pos()), key.Name))
				}
			}
			if name == nil {
				errs = append(errs, fmt.Sprintf("%s: prometheus.%s without a Name", where(n.Pos()), kind))
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
	return errs
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

// TestDefinedMetrics: the reader of the metric definitions finds names
// given as literals or package constants, adds a histogram's and a
// summary's series, follows an aliased import, skips test files and
// refuses what it cannot read.
func TestDefinedMetrics(t *testing.T) {
	write := func(dir, name, src string) {
		t.Helper()
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(src), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	root := t.TempDir()
	write(filepath.Join(root, "a"), "a.go", `package a

import prom "github.com/prometheus/client_golang/prometheus"

const upName = "x_up"

var (
	_ = prom.NewGauge(prom.GaugeOpts{Name: upName, Help: "h"})
	_ = prom.NewHistogram(prom.HistogramOpts{Name: "x_seconds"})
	_ = prom.NewSummaryVec(prom.SummaryOpts{Name: "x_latency"}, nil)
	_ = prom.NewDesc("x_peer_up", "h", nil, nil)
)
`)
	write(filepath.Join(root, "a"), "b.go", `package a

import "github.com/prometheus/client_golang/prometheus"

var _ = prometheus.NewCounter(prometheus.CounterOpts{Name: "x_total"})
`)
	write(filepath.Join(root, "a"), "a_test.go", `package a

import "github.com/prometheus/client_golang/prometheus"

var _ = prometheus.NewCounter(prometheus.CounterOpts{Name: "test_only_total"})
`)
	got, err := definedMetrics(root)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for n := range got {
		names = append(names, n)
	}
	sort.Strings(names)
	want := []string{"x_latency", "x_latency_count", "x_latency_sum", "x_peer_up", "x_seconds_bucket", "x_seconds_count", "x_seconds_sum", "x_total", "x_up"}
	if !slices.Equal(names, want) {
		t.Errorf("got %q, want %q", names, want)
	}
	if got["x_total"] != "a/b.go:5" {
		t.Errorf("x_total at %q, want a/b.go:5", got["x_total"])
	}

	write(filepath.Join(root, "b"), "b.go", `package b

import "github.com/prometheus/client_golang/prometheus"

func name() string { return "computed" }

var (
	_ = prometheus.NewGauge(prometheus.GaugeOpts{Name: name()})
	_ = prometheus.NewGauge(prometheus.GaugeOpts{Namespace: "netd", Name: "n"})
	_ = prometheus.NewGauge(prometheus.GaugeOpts{Help: "no name"})
)
`)
	_, err = definedMetrics(root)
	for _, w := range []string{"b/b.go:8: the metric name is neither", "b/b.go:9: Namespace is set", "b/b.go:10: prometheus.GaugeOpts without a Name"} {
		if err == nil || !strings.Contains(err.Error(), w) {
			t.Errorf("error %v; want it to contain %q", err, w)
		}
	}
}
