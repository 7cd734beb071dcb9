package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/netd/lab/scale"
	"github.com/ducksnest/netd/policy/gen"
)

func newLabScaleCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "scale",
		Short: "measure labs of many nodes: convergence, memory, CPU, sessions, routes, restart blast radius",
		Long: `Brings up, one after the other, a lab of each size in --nodes for each
--topology (a generated policy: netd lab up --nodes), measures it and
brings it down: lab build and convergence time, host memory and each
netd's RSS and idle CPU, sessions and routes per node, the time for a new
pod block (a policy change) to reach every node, and the blast radius of a
kill -9 and a SIGTERM restart of an ordinary node and of a route
reflector (route writes seen by the kernel and pings lost on the other
nodes). It prints the tables and the growth fitted against N. A size that
fails (does not converge, does not fit) ends that topology's series: the
table says where it stopped. Root; minutes per lab at 100 nodes.`,
		Example: `  netd lab scale --nodes 25,50,100 --topology full-mesh,route-reflector
  netd lab scale --nodes 10 --idle 5s -o json`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	name := fs.String("name", "scale", "lab name prefix: the labs are <name>-<N>f (full mesh) and <name>-<N>r (route reflectors)")
	stateRoot := fs.String("state-dir", lab.DefaultStateRoot, "directory of the labs' state directories")
	nodes := fs.IntSlice("nodes", []int{25, 50, 100}, "lab sizes")
	topologies := fs.StringSlice("topology", []string{gen.FullMesh, gen.RouteReflector}, "BGP topologies to measure")
	sites := fs.Int("sites", 3, "sites (a LAN each) the nodes are spread over")
	reflectors := fs.Int("reflectors", 3, "route reflectors with route-reflector")
	idle := fs.Duration("idle", 30*time.Second, "how long idle CPU is measured")
	pairs := fs.Int("pairs", 20, "pod pairs pinging (every 20ms) through each restart")
	netdArgs := fs.StringArray("netd-arg", nil, "an argument added to every node's netd run (after the module's), e.g. --netd-arg=--bfd-interval=300ms; repeat for more")
	var output string
	addOutputFlag(cmd, &output, "text", "text", "json", "yaml")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
		for _, t := range *topologies {
			if t != gen.FullMesh && t != gen.RouteReflector {
				return usageErrorf(cmd, "--topology takes %s and %s, not %q", gen.FullMesh, gen.RouteReflector, t)
			}
		}
		for _, n := range *nodes {
			if n < 3 || n > gen.MaxNodes {
				return usageErrorf(cmd, "--nodes takes sizes from 3 to %d, not %d", gen.MaxNodes, n)
			}
		}
		netd, err := os.Executable()
		if err != nil {
			return fmt.Errorf("finding own executable: %w", err)
		}
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		header := fmt.Sprintf("netd lab scale, %s, %d cores, load %s at the start", time.Now().UTC().Format(time.RFC3339), runtime.NumCPU(), scale.LoadAvg())
		if len(*netdArgs) > 0 {
			header += fmt.Sprintf("; every netd with %q", *netdArgs)
		}
		fmt.Fprintln(stderr, header)
		sizes := slices.Sorted(slices.Values(*nodes))
		var results []*scale.Result
		for _, t := range *topologies {
			sf := &scaleFlags{sites: *sites, topology: t, reflectors: *reflectors}
			for _, n := range sizes {
				c, err := scaleConfig(sf, n, *name, *stateRoot, netd, log)
				if err != nil {
					return err
				}
				c.Idle, c.Pairs, c.NetdArgs = *idle, *pairs, *netdArgs
				fmt.Fprintf(stderr, "measuring %d nodes, %s (lab %s), load %s\n", n, t, c.Lab.Name, scale.LoadAvg())
				r, err := scale.Measure(ctx, c)
				if err != nil {
					r.Err = err.Error()
				}
				results = append(results, r)
				// Each lab's tables as soon as it is down: a long series
				// cut short keeps what it measured.
				scale.Print(stderr, []*scale.Result{r})
				if err != nil {
					fmt.Fprintf(stderr, "  %d nodes, %s: %v (no larger size of this topology)\n", n, t, err)
					break
				}
			}
		}
		if output != "text" {
			return writeStructured(stdout, output, map[string]any{"header": header, "labs": results, "growth": scale.Fits(results)})
		}
		fmt.Fprintf(stdout, "%s, load %s at the end\n\n", header, scale.LoadAvg())
		scale.Print(stdout, results)
		return nil
	}
	return cmd
}

// scaleConfig is the measurement of one lab: the generated policy, and
// the same policy with a second block on a node for the new-block figure.
func scaleConfig(sf *scaleFlags, n int, name, stateRoot, netd string, log *slog.Logger) (scale.Config, error) {
	o := sf.options(n)
	data, st, err := generatePolicy(o)
	if err != nil {
		return scale.Config{}, err
	}
	f, err := gen.Policy(o)
	if err != nil {
		return scale.Config{}, err
	}
	owner := n / 2
	f.Spec.Nodes[owner].PodCIDRs = append(f.Spec.Nodes[owner].PodCIDRs, gen.ExtraBlock(0).String())
	newPolicy, _, err := compileGenerated(f)
	if err != nil {
		return scale.Config{}, err
	}
	labName := fmt.Sprintf("%s-%d%c", name, n, sf.topology[0]) // full-mesh: f, route-reflector: r
	c := scale.Config{
		Lab: lab.Config{Name: labName, StateDir: filepath.Join(stateRoot, labName), State: st, Policy: data, Netd: netd,
			PodsPerNode: 1, ConvergeTimeout: max(90*time.Second, time.Duration(n)*2*time.Second), Logger: log},
		Topology: sf.topology, Sites: o.Sites,
		Ordinary:  gen.NodeName(n - 1),
		NewPolicy: newPolicy, NewBlock: gen.ExtraBlock(0), BlockOwner: gen.NodeName(owner),
	}
	if o.Reflectors > 0 {
		c.Reflector = gen.NodeName(0)
	}
	return c, nil
}
