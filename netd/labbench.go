package main

import (
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/netd/bfd"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/netd/lab/bench"
)

func newLabBenchCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bench",
		Short: "measure netd against gobgpd and BIRD side by side on a lab of its own",
		Long: `Builds a lab (root), runs the same four nodes with Debian's BIRD 2, then
gobgpd, then netd (same peers, BGP timers, graceful restart, and BIRD with
netd's BFD timers), plus an external BIRD peer that announces --prefixes
prefixes to firebat, and prints one table: idle VmRSS per node, idle CPU of
the four nodes, VmRSS growth per prefix (peak, steady, after withdrawal),
restart (kill -9, SIGTERM) -> sessions up and routes back, and kernel
route install against ip -batch and BIRD. Medians and ratios measured in
the same run, with the load average: the machine may be shared. The lab
is removed at the end, also on failure.`,
		Example: `  netd lab bench --name hbench
  netd lab bench --idle 20s --runs 3 --install 10000 --install-rounds 1   # quick: about 3 minutes`,
		Args: noArgs,
	}
	fs, name, stateDir := labFlags(cmd)
	_ = fs.Lookup("name").Value.Set("bench")
	fs.Lookup("name").DefValue = "bench"
	policyPath := fs.String("policy", defaultLabPolicy, "policy file (the embedded ducksnest example if the default is missing)")
	netdPath := fs.String("netd", "", "netd binary to run on the nodes (default: this executable)")
	idle := fs.Duration("idle", time.Minute, "how long idle CPU is measured")
	settle := fs.Duration("settle", 5*time.Second, "wait after convergence before idle figures, and after learning or withdrawing the prefixes")
	runs := fs.Int("runs", 10, "restarts of each kind (kill -9, SIGTERM) per daemon")
	prefixes := fs.Int("prefixes", 10000, "prefixes the external peer announces (at most 16384)")
	install := fs.IntSlice("install", []int{10000, 100000}, "route counts of the kernel install figure")
	rounds := fs.Int("install-rounds", 3, "rounds of each kernel install (median)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
		if *runs < 1 || *prefixes < 1 || *idle <= 0 {
			return usageErrorf(cmd, "--runs, --prefixes and --idle must be positive")
		}
		for _, bin := range []string{"bird", "birdc", "gobgpd", "gobgp", "ip"} {
			if _, err := exec.LookPath(bin); err != nil {
				return fmt.Errorf("%s is needed (apt-get install bird2 gobgpd iproute2): %w", bin, err)
			}
		}
		log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
		data, _, err := loadLabPolicy(*policyPath, *policyPath == defaultLabPolicy, cmd.InOrStdin(), log)
		if err != nil {
			return err
		}
		if *netdPath == "" {
			if *netdPath, err = os.Executable(); err != nil {
				return fmt.Errorf("finding own executable: %w", err)
			}
		}
		if *stateDir == "" {
			*stateDir = lab.StateDirFor(*name)
		}
		return bench.Run(ctx, bench.Config{
			Name: *name, StateDir: *stateDir, Policy: data, Netd: *netdPath,
			Idle: *idle, Settle: *settle, Runs: *runs, Prefixes: *prefixes,
			Install: *install, InstallRounds: *rounds,
			BFD:     bench.BFDTimers{Interval: 100 * time.Millisecond, Multiplier: bfd.DefaultMultiplier},
			Compile: compileSource, Log: log,
		}, stdout)
	}
	return cmd
}
