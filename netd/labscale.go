package main

import (
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
	"github.com/ducksnest/netd/policy/gen"
)

// scaleFlags are the flags of `lab up` (and `lab scale`) that generate the
// lab's policy instead of reading one (policy/gen).
type scaleFlags struct {
	nodes, sites, reflectors int
	topology                 string
}

func addScaleFlags(fs *pflag.FlagSet) *scaleFlags {
	s := &scaleFlags{}
	fs.IntVar(&s.nodes, "nodes", 0, fmt.Sprintf("generate a policy of this many nodes (1-%d) instead of reading --policy", gen.MaxNodes))
	fs.IntVar(&s.sites, "sites", 3, "with --nodes: sites (a LAN each) the nodes are spread over")
	fs.StringVar(&s.topology, "topology", gen.RouteReflector, "with --nodes: BGP topology, full-mesh or route-reflector")
	fs.IntVar(&s.reflectors, "reflectors", 3, "with --nodes and --topology route-reflector: route reflectors (one per site while there are as many sites)")
	return s
}

// options are the generator's options for n nodes.
func (s *scaleFlags) options(n int) gen.Options {
	o := gen.Options{Nodes: n, Sites: min(s.sites, n), Topology: s.topology}
	if s.topology == gen.RouteReflector {
		o.Reflectors = min(s.reflectors, n)
	}
	return o
}

// labUpPolicy returns the policy of `lab up`: generated with --nodes (then
// also one pod per node and a convergence timeout that grows with the
// nodes, unless given), read from --policy otherwise.
func labUpPolicy(cmd *cobra.Command, s *scaleFlags, path string, pods *int, timeout *time.Duration, log *slog.Logger) ([]byte, *desired.State, error) {
	fs := cmd.Flags()
	if s.nodes == 0 {
		for _, f := range []string{"sites", "topology", "reflectors"} {
			if fs.Changed(f) {
				return nil, nil, usageErrorf(cmd, "--%s goes with --nodes", f)
			}
		}
		return loadLabPolicy(path, path == defaultLabPolicy, cmd.InOrStdin(), log)
	}
	if fs.Changed("policy") {
		return nil, nil, usageErrorf(cmd, "--nodes generates the policy: it does not go with --policy")
	}
	if !fs.Changed("pods") {
		*pods = 1
	}
	if !fs.Changed("timeout") {
		*timeout = max(*timeout, time.Duration(s.nodes)*2*time.Second)
	}
	data, st, err := generatePolicy(s.options(s.nodes))
	if err != nil {
		return nil, nil, usageErrorf(cmd, "%v", err)
	}
	return data, st, nil
}

// generatePolicy generates, encodes and compiles a policy (the compiled
// state from the encoded file, as netd will read it).
func generatePolicy(o gen.Options) ([]byte, *desired.State, error) {
	f, err := gen.Policy(o)
	if err != nil {
		return nil, nil, err
	}
	return compileGenerated(f)
}

func compileGenerated(f *policy.File) ([]byte, *desired.State, error) {
	data, err := gen.YAML(f)
	if err != nil {
		return nil, nil, err
	}
	st, err := compileSource("generated", data)
	if err != nil {
		return nil, nil, err
	}
	return data, st, nil
}
