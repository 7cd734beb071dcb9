package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/acl"
	"github.com/ducksnest/netd/netd/bfd"
	"github.com/ducksnest/netd/netd/daemon"
)

// envOr returns the environment variable's value, or def.
func envOr(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func newRunCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "run",
		Short: "run the node daemon (BGP, routes, MTU)",
		Long: `Runs the per-node daemon: BGP with the policy's peers, the routes and MTUs
of the pod blocks in netd's own table, and, with --kubeconfig or
--tailscale-socket, the Calico and Tailscale parts. SIGHUP reloads the
policy; SIGTERM stops (--stop-mode). Most flags also come from NETD_*
environment variables.`,
		Example: `  netd run --policy /etc/netd/policy.yaml --node firebat
  netd run --node firebat --kubeconfig /etc/netd/kubeconfig --tailscale-socket /var/run/tailscale/tailscaled.sock`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	host, _ := os.Hostname()
	policyPath := fs.String("policy", envOr("NETD_POLICY", "/etc/netd/policy.yaml"), "policy file (env NETD_POLICY)")
	node := fs.String("node", envOr("NETD_NODE", host), "this node's name in the policy (env NETD_NODE)")
	socket := fs.String("socket", envOr("NETD_SOCKET", "/run/netd/netd.sock"), "unix socket for netd status (empty: none)")
	metrics := fs.String("metrics-addr", envOr("NETD_METRICS_ADDR", "127.0.0.1:9180"), "address for /metrics, /healthz, /readyz (empty: none)")
	logLevel := fs.String("log-level", envOr("NETD_LOG_LEVEL", "info"), "debug, info, warn or error")
	logFormat := fs.String("log-format", envOr("NETD_LOG_FORMAT", "text"), "text or json")
	resync := fs.Duration("resync", 30*time.Second, "period of the full resync that repairs drift")
	stopMode := fs.String("stop-mode", envOr("NETD_STOP_MODE", "withdraw"), "on SIGTERM: withdraw (peers drop this node's blocks now) or graceful (peers keep them as stale until netd is back)")
	stopTimeout := fs.Duration("stop-timeout", 5*time.Second, "bound on the shutdown")
	stateDir := fs.String("state-dir", envOr("NETD_STATE_DIR", "/run/netd"), "directory for what must survive a restart but not a reboot: the graceful-stop marker (empty: none)")
	grpcAddr := fs.String("grpc-addr", envOr("NETD_GRPC_ADDR", ""), "serve GoBGP's gRPC API (for the gobgp CLI) on this loopback address:port, e.g. 127.0.0.1:50051 (empty: off)")
	bfdOn := fs.Bool("bfd", envOr("NETD_BFD", "true") == "true", "run BFD (RFC 5880, UDP 3784) with every BGP peer: a silent peer's routes leave the kernel within a second (env NETD_BFD)")
	bfdInterval := fs.Duration("bfd-interval", 100*time.Millisecond, "BFD transmit and receive interval once a session is up")
	bfdMult := fs.Int("bfd-multiplier", bfd.DefaultMultiplier, "BFD detect multiplier: a peer is down after this many intervals without a packet (8 x 100ms: a silent peer is out within a second, a stall of either netd under 0.7s is no failure)")
	kubeconfig := fs.String("kubeconfig", envOr("NETD_KUBECONFIG", ""), "kubeconfig: pod blocks and peer ownership from Calico IPAM BlockAffinities (empty: the policy's static blocks)")
	syncCalico := fs.Bool("sync-calico", envOr("NETD_SYNC_CALICO", "true") == "true", "with --kubeconfig: compete for the kube-system/netd-calico Lease and, while holding it, keep the Calico objects equal to the policy")
	tsSocket := fs.String("tailscale-socket", envOr("NETD_TAILSCALE_SOCKET", ""), "tailscaled's LocalAPI socket, e.g. /var/run/tailscale/tailscaled.sock: advertise the pod blocks as subnet routes and check learned routes against what Tailscale forwards (empty: off)")
	discover := fs.Bool("discover-peers", false, "with --tailscale-socket: BGP node peers are the tailnet peers carrying the policy's node tag")
	flush := fs.Bool("flush-on-exit", false, "remove netd's routes and rule when stopping (default: keep them so a restart loses no traffic)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
		log, err := newLogger(stderr, *logLevel, *logFormat)
		if err != nil {
			return &usageError{cmd: cmd, err: err}
		}
		singleP()
		mode := daemon.StopMode(*stopMode)
		if mode != daemon.StopWithdraw && mode != daemon.StopGraceful {
			return usageErrorf(cmd, "--stop-mode must be withdraw or graceful, not %q", *stopMode)
		}
		if *discover && *tsSocket == "" {
			return usageErrorf(cmd, "--discover-peers needs --tailscale-socket")
		}
		if *grpcAddr != "" {
			ap, err := netip.ParseAddrPort(*grpcAddr)
			if err != nil || !ap.Addr().IsLoopback() {
				return usageErrorf(cmd, "--grpc-addr %q: want a loopback address and port such as 127.0.0.1:50051", *grpcAddr)
			}
		}
		// Tailnet credentials (the variables `netd policy apply` reads, as the
		// NixOS module sets them from LoadCredential=) make this netd a
		// candidate writer of the tailnet policy.
		var tailnet *acl.Target
		switch t, err := acl.TargetFromEnv(); {
		case err == nil:
			tailnet = &t
			log.Info("tailnet credentials found: this netd may write the tailnet policy", "target", t.String())
		case !errors.Is(err, acl.ErrNoCredentials):
			return fmt.Errorf("tailnet credentials: %w", err)
		}
		hup := make(chan os.Signal, 1)
		signal.Notify(hup, syscall.SIGHUP)
		defer signal.Stop(hup)
		reload := make(chan struct{}, 1)
		go func() {
			for range hup {
				select {
				case reload <- struct{}{}:
				default:
				}
			}
		}()
		d, err := daemon.New(daemon.Config{
			PolicyPath: *policyPath, Node: *node, SocketPath: *socket, MetricsAddr: *metrics,
			Resync: *resync, StopMode: mode, StopTimeout: *stopTimeout, FlushOnExit: *flush,
			StateDir: *stateDir, GRPCAddr: *grpcAddr,
			Kubeconfig: *kubeconfig, SyncCalico: *syncCalico, TailscaleSocket: *tsSocket, DiscoverPeers: *discover,
			BFD:     daemon.BFDConfig{Enabled: *bfdOn, Interval: *bfdInterval, Multiplier: *bfdMult},
			Tailnet: tailnet, Reload: reload, Log: log,
		})
		if err != nil {
			return err
		}
		if err := d.Run(ctx); err != nil && !errors.Is(err, context.Canceled) {
			return err
		}
		return nil
	}
	return cmd
}

func newLogger(w io.Writer, level, format string) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log-level: %w", err)
	}
	opts := &slog.HandlerOptions{Level: lv}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("--log-format must be text or json, not %q", format)
}

// singleP runs the daemon's Go code on one CPU at a time unless
// GOMAXPROCS says otherwise. An idle netd is a few hundred small events a
// second (BFD packets, probes, keepalives): with more than one P each
// wakes a second thread that spins looking for work, which cost about a
// third of its idle CPU in netd lab bench; the work itself (BGP, route
// writes) is one reconcile at a time and does not need a second CPU.
func singleP() {
	if os.Getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(1)
	}
}
