package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/policy/desired"
)

// The Calico part of `netd policy diff` and `netd policy apply`: what the
// policy file would change in the cluster, and applying it with
// optimistic concurrency. Dispatched from runPolicy.

const applyUsage = `usage:
  netd policy diff FILE [--kubeconfig K] [--format text|json]
      what would change in the cluster's Calico objects
      (create, update, disable, delete-when-drained, unowned)
  netd policy apply FILE [--kubeconfig K] [--timeout D]
      apply it: writes only objects labelled ` + "netd.ducksnest.dev/managed-by=netd" + `,
      each conditional on the resourceVersion read (exit 1 on a conflict)
`

type clusterFlags struct {
	kubeconfig string
	format     string
	timeout    time.Duration
}

func parseClusterArgs(name string, args []string, stderr io.Writer) (string, clusterFlags, error) {
	var f clusterFlags
	fs := newFlagSet(name, stderr)
	fs.Usage = func() { fmt.Fprint(stderr, applyUsage) }
	fs.StringVar(&f.kubeconfig, "kubeconfig", os.Getenv("KUBECONFIG"), "kubeconfig `file` (default: $KUBECONFIG, ~/.kube/config, in-cluster)")
	fs.StringVar(&f.format, "format", "text", "output `format`: text or json (diff)")
	fs.DurationVar(&f.timeout, "timeout", 60*time.Second, "give up after `duration`")
	pos, err := parseArgs(fs, args, 1)
	if err != nil {
		fmt.Fprintf(stderr, "netd policy %s: %v\n\n%s", name, err, applyUsage)
		return "", f, exitError{2}
	}
	if f.format != "text" && f.format != "json" {
		fmt.Fprintf(stderr, "netd policy %s: --format %q: want text or json\n", name, f.format)
		return "", f, exitError{2}
	}
	return pos[0], f, nil
}

// clusterReconciler compiles FILE and connects to the cluster.
func clusterReconciler(path string, f clusterFlags, stderr io.Writer) (*calico.Reconciler, *desired.State, error) {
	_, st, err := compileFile(path)
	if err != nil {
		printProblems(stderr, problems(path, err))
		return nil, nil, exitError{1}
	}
	cfg, err := calico.LoadConfig(f.kubeconfig)
	if err != nil {
		return nil, nil, err
	}
	c, err := calico.NewClients(cfg)
	if err != nil {
		return nil, nil, err
	}
	host, _ := os.Hostname()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	return calico.NewReconciler(c, log, "netd-cli@"+host), st, nil
}

func policyDiff(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	path, f, err := parseClusterArgs("diff", args, stderr)
	if err != nil {
		return err
	}
	r, st, err := clusterReconciler(path, f, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	p, err := r.Plan(ctx, st)
	if err != nil {
		return fmt.Errorf("planning calico changes: %w", err)
	}
	if f.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(p)
	}
	fmt.Fprint(stdout, p.String())
	return nil
}

func policyApply(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	path, f, err := parseClusterArgs("apply", args, stderr)
	if err != nil {
		return err
	}
	r, st, err := clusterReconciler(path, f, stderr)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, f.timeout)
	defer cancel()
	p, err := r.Plan(ctx, st)
	if err != nil {
		return fmt.Errorf("planning calico changes: %w", err)
	}
	res, err := r.Apply(ctx, p)
	for _, a := range res.Applied {
		fmt.Fprintf(stdout, "applied  %s\n", a)
	}
	for _, a := range p.Actions {
		if !a.Writes() {
			fmt.Fprintf(stdout, "skipped  %s\n", a)
		}
	}
	for _, a := range res.Conflicts {
		fmt.Fprintf(stdout, "CONFLICT %s %s %s changed since it was read (resourceVersion %s): not overwritten; run diff again\n", a.Op, a.Kind, a.Name, a.ResourceVersion)
	}
	if len(res.Applied) == 0 && len(p.Actions) == 0 {
		fmt.Fprint(stdout, "calico: no changes\n")
	}
	if errors.Is(err, calico.ErrConflict) {
		return exitError{1}
	}
	if err != nil {
		return fmt.Errorf("applying calico changes: %w", err)
	}
	return nil
}
