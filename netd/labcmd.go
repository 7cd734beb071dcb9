package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/ducksnest/netd/examples"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
)

const defaultLabPolicy = "examples/ducksnest/policy.yaml"

func newLabCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "lab",
		Short: "build, check and remove a local multi-node lab in network namespaces",
		Long: `Builds the seed lab on this machine (root): every node a network namespace
(or, with --systemd, a systemd container running the NixOS module's unit)
with one real netd, a LAN bridge, an emulated or real (headscale +
tailscaled) overlay, and pods. up leaves it running; status and check look
at it; down removes every namespace and process it made.`,
		Args: cobra.ArbitraryArgs,
		RunE: groupRun,
	}
	cmd.AddCommand(newLabUpCmd(), newLabStatusCmd(), newLabCheckCmd(), newLabDownCmd())
	cmd.AddCommand(newLabBenchCmd(), newLabChaosCmd(), newLabScaleCmd())
	return cmd
}

// labFlags are the flags every lab subcommand has.
func labFlags(cmd *cobra.Command) (*pflag.FlagSet, *string, *string) {
	fs := cmd.Flags()
	labName := fs.String("name", lab.DefaultName, "lab name: prefix of every namespace")
	stateDir := fs.String("state-dir", "", "state directory (default /run/netd-lab/<name>)")
	return fs, labName, stateDir
}

func newLabUpCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "up",
		Short: "build the lab and start netd on every node; leave it running",
		Example: `  netd lab up
  netd lab up --overlay tailscale --pods 1
  netd lab up --systemd --policy my-policy.yaml
  netd lab up --name big --nodes 100 --sites 4 --topology route-reflector`,
		Args: noArgs,
	}
	fs, name, stateDir := labFlags(cmd)
	policyPath := fs.String("policy", defaultLabPolicy, "policy file, - for standard input (the embedded ducksnest example if the default is missing)")
	netdPath := fs.String("netd", "", "netd binary to run on the nodes (default: this executable)")
	pods := fs.Int("pods", lab.DefaultPodsPerNode, "pods per node (plus one probe pod)")
	static := fs.Bool("static", false, "start no netd; install the routes netd would by hand (to test the topology)")
	timeout := fs.Duration("timeout", 90*time.Second, "how long to wait for convergence")
	overlay := fs.String("overlay", "emulated", "emulated (a bridge standing in for tailscale0) or tailscale (headscale + real tailscaled per node)")
	systemd := fs.Bool("systemd", false, "boot every node as a systemd container running the NixOS module's netd.service (root file system from $NETD_LAB_ROOTFS or scripts/systemd-rootfs.sh)")
	scale := addScaleFlags(fs)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
		if *overlay != "emulated" && *overlay != "tailscale" {
			return usageErrorf(cmd, "--overlay must be emulated or tailscale, not %q", *overlay)
		}
		log := slog.New(slog.NewTextHandler(stderr, nil))
		data, st, err := labUpPolicy(cmd, scale, *policyPath, pods, timeout, log)
		if err != nil {
			return err
		}
		if *netdPath == "" {
			if *netdPath, err = os.Executable(); err != nil {
				return fmt.Errorf("finding own executable: %w", err)
			}
		}
		cfg := lab.Config{Name: *name, StateDir: *stateDir, State: st, Policy: data, Netd: *netdPath,
			PodsPerNode: *pods, ConvergeTimeout: *timeout, Logger: log}
		if *systemd {
			if *static {
				return usageErrorf(cmd, "--systemd runs netd.service on every node; it does not go with --static")
			}
			if cfg.Rootfs, err = systemdRootfs(ctx, stderr); err != nil {
				return err
			}
		}
		start := time.Now()
		var l *lab.Lab
		switch {
		case *overlay == "tailscale":
			var tc lab.TailnetConfig
			if tc, err = tailscaleTools(ctx, stderr); err == nil {
				// Every netd gets the lab headscale's API key, as the module
				// gives it services.netd.tailnet: the policy's tailnet writer
				// keeps the tailnet policy in sync (not in the systemd lab).
				tc.Credentials = cfg.Rootfs == ""
				l, _, err = lab.UpTailscale(ctx, cfg, tc)
			}
		case *static:
			if l, err = lab.Build(ctx, cfg); err == nil {
				err = l.InstallStaticRoutes()
			}
		default:
			l, err = lab.Up(ctx, cfg)
		}
		if err != nil {
			if l != nil {
				for _, n := range l.Nodes {
					if n.Netd != nil {
						fmt.Fprintf(stderr, "--- %s (%s):\n%s\n", n.Name, n.Log, l.LogTail(n.Name, 15))
					}
				}
			}
			return fmt.Errorf("%w (the lab is left for inspection: netd lab down --name %s)", err, cfg.Name)
		}
		fmt.Fprintf(stdout, "lab %s up in %v: %d nodes, %d namespaces; state in %s\n",
			l.Name, time.Since(start).Round(time.Millisecond), len(l.Nodes), len(l.Namespaces), l.StateDir)
		return nil
	}
	return cmd
}

// loadLabPolicy reads and compiles the policy. The default path is looked
// up in the working directory and its parents, then taken from the copy
// embedded in the binary.
func loadLabPolicy(path string, isDefault bool, stdin io.Reader, log *slog.Logger) ([]byte, *desired.State, error) {
	var data []byte
	var err error
	if path == "-" {
		path = "<stdin>"
		data, err = io.ReadAll(io.LimitReader(stdin, policy.MaxFileSize+1))
	} else {
		data, err = os.ReadFile(path)
	}
	if isDefault && errors.Is(err, fs.ErrNotExist) {
		if found, ok := findUp(path); ok {
			path = found
			data, err = os.ReadFile(path)
		} else {
			log.Info("policy file not found; using the embedded ducksnest example", "path", path)
			path, data, err = "embedded:"+defaultLabPolicy, examples.Ducksnest, nil
		}
	}
	if err != nil {
		return nil, nil, &policy.ReadError{Path: path, Err: err}
	}
	f, err := policy.LoadReader(path, bytes.NewReader(data))
	if err != nil {
		return nil, nil, err
	}
	st, err := policy.Compile(f)
	if err != nil {
		return nil, nil, err
	}
	return data, st, nil
}

func findUp(rel string) (string, bool) {
	dir, err := os.Getwd()
	if err != nil {
		return "", false
	}
	for {
		p := filepath.Join(dir, rel)
		if _, err := os.Stat(p); err == nil {
			return p, true
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", false
		}
		dir = parent
	}
}

func loadLab(name, stateDir string) (*lab.Lab, error) {
	if stateDir == "" {
		stateDir = lab.StateDirFor(name)
	}
	return lab.Load(stateDir, nil)
}

func newLabDownCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "down",
		Short: "remove every namespace, process and file of the lab",
		Args:  noArgs,
	}
	_, name, stateDir := labFlags(cmd)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stderr := cmd.Context(), cmd.ErrOrStderr()
		log := slog.New(slog.NewTextHandler(stderr, nil))
		if l, err := loadLab(*name, *stateDir); err == nil {
			if err := lab.DownTailnet(ctx, l); err != nil {
				log.Warn("ending the lab's tailnet", "err", err)
			}
		}
		return lab.Down(ctx, *name, *stateDir, log)
	}
	return cmd
}

// systemdRootfs finds the systemd lab's root file system: $NETD_LAB_ROOTFS,
// or built (once, cached outside the repository) by
// scripts/systemd-rootfs.sh.
func systemdRootfs(ctx context.Context, stderr io.Writer) (string, error) {
	if p := os.Getenv("NETD_LAB_ROOTFS"); p != "" {
		return p, nil
	}
	vars, err := runToolScript(ctx, "systemd-rootfs.sh", stderr)
	if err != nil {
		return "", err
	}
	if vars["NETD_LAB_ROOTFS"] == "" {
		return "", errors.New("scripts/systemd-rootfs.sh printed no NETD_LAB_ROOTFS")
	}
	return vars["NETD_LAB_ROOTFS"], nil
}

// runToolScript runs scripts/<name> from the repository (found from the
// working directory up) and returns the NAME=path lines it prints.
func runToolScript(ctx context.Context, name string, stderr io.Writer) (map[string]string, error) {
	script, ok := findUp(filepath.Join("scripts", name))
	if !ok {
		return nil, fmt.Errorf("run from the repository (scripts/%s) or set the variables it prints", name)
	}
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", script, err)
	}
	vars := map[string]string{}
	for _, line := range strings.Split(string(out), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vars[k] = v
		}
	}
	return vars, nil
}

// tailscaleTools finds tailscaled, tailscale and headscale: from the
// TAILSCALED, TAILSCALE and HEADSCALE variables, or built (once, cached by
// version outside the repository) by scripts/tailscale-tools.sh.
func tailscaleTools(ctx context.Context, stderr io.Writer) (lab.TailnetConfig, error) {
	tc := lab.TailnetConfig{TailscaledBin: os.Getenv("TAILSCALED"), TailscaleBin: os.Getenv("TAILSCALE"), HeadscaleBin: os.Getenv("HEADSCALE")}
	if tc.TailscaledBin != "" && tc.TailscaleBin != "" && tc.HeadscaleBin != "" {
		return tc, nil
	}
	script, ok := findUp(filepath.Join("scripts", "tailscale-tools.sh"))
	if !ok {
		return tc, errors.New("set TAILSCALED, TAILSCALE and HEADSCALE, or run from the repository (scripts/tailscale-tools.sh builds them)")
	}
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Stderr = stderr
	out, err := cmd.Output()
	if err != nil {
		return tc, fmt.Errorf("%s: %w", script, err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		k, v, _ := strings.Cut(line, "=")
		switch k {
		case "TAILSCALED":
			tc.TailscaledBin = v
		case "TAILSCALE":
			tc.TailscaleBin = v
		case "HEADSCALE":
			tc.HeadscaleBin = v
		}
	}
	if tc.TailscaledBin == "" || tc.TailscaleBin == "" || tc.HeadscaleBin == "" {
		return tc, fmt.Errorf("%s printed no tool paths", script)
	}
	return tc, nil
}

func newLabCheckCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "check",
		Short: "check the lab: pod-to-pod matrix, path MTU, bulk transfer, isolation",
		Long: `Checks the running lab: ICMP and TCP between every pair of pods, which path
each pair takes (LAN or overlay), path-MTU probes, a bulk TCP transfer over
an overlay pair, and that the lab's namespaces reach nothing outside.
Exit status 1 when a check fails.`,
		Args: noArgs,
	}
	var output string
	fs, name, stateDir := labFlags(cmd)
	addOutputFlag(cmd, &output, "text", "text", "json", "yaml")
	addJSONAlias(cmd, &output)
	bulk := fs.Int("bulk", 8<<20, "bytes of the bulk TCP transfer over an overlay pair (0: none)")
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stdout, stderr := cmd.Context(), cmd.OutOrStdout(), cmd.ErrOrStderr()
		l, err := loadLab(*name, *stateDir)
		if err != nil {
			return err
		}
		rep, err := l.Check(ctx, lab.CheckOptions{BulkBytes: *bulk})
		if err != nil {
			return err
		}
		isoErr := l.CheckIsolation(ctx)
		if output != "text" {
			if err := writeStructured(stdout, output, rep); err != nil {
				return err
			}
		} else {
			rep.Print(stdout)
		}
		if isoErr != nil {
			fmt.Fprintln(stderr, isoErr)
		}
		if !rep.OK() || isoErr != nil {
			return exitError{code: 1}
		}
		return nil
	}
	return cmd
}

// nodeView is one node in `netd lab status`.
type nodeView struct {
	*lab.Node
	Running bool            `json:"running"`
	Ready   bool            `json:"ready"`
	Routes  []string        `json:"routes"` // from the kernel (netd's table)
	Status  json.RawMessage `json:"status,omitempty"`
	Err     string          `json:"err,omitempty"`
}

// bgpView picks the peers out of a netd status.
type bgpView struct {
	BGP struct {
		Peers []struct {
			Name, Address, State string
			Accepted             int
		}
	} `json:"bgp"`
}

func newLabStatusCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show the lab's nodes, netd processes, peers and routes",
		Args:  noArgs,
	}
	var output string
	_, name, stateDir := labFlags(cmd)
	addOutputFlag(cmd, &output, "text", "text", "json", "yaml")
	addJSONAlias(cmd, &output)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stdout := cmd.Context(), cmd.OutOrStdout()
		l, err := loadLab(*name, *stateDir)
		if err != nil {
			return err
		}
		var views []nodeView
		for _, n := range l.Nodes {
			v := nodeView{Node: n, Running: l.NetdRunning(n.Name)}
			if v.Running {
				if st, err := l.Status(ctx, n.Name); err != nil {
					v.Err = err.Error()
				} else {
					v.Ready, v.Status = st.Ready, st.Raw
				}
			}
			rs, err := l.RouteText(ctx, n.Name)
			if err != nil {
				v.Err = err.Error()
			}
			v.Routes = rs
			views = append(views, v)
		}
		if output != "text" {
			return writeStructured(stdout, output, map[string]any{"lab": l, "nodes": views})
		}
		fmt.Fprintf(stdout, "lab %s (state %s), namespaces: %s\n\n", l.Name, l.StateDir, strings.Join(l.Namespaces, " "))
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "NODE\tNAMESPACE\tNETD\tREADY\tOVERLAY\tLAN\tPODS")
		for _, v := range views {
			netd := "down"
			if v.Running {
				netd = fmt.Sprintf("pid %d", v.Netd.PID)
			}
			var pods []string
			for _, p := range v.Pods {
				pods = append(pods, p.Addr.String())
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\t%s\n", v.Node.Name, v.NS, netd, v.Ready, v.OverlayAddr, lanStr(v.Node), strings.Join(pods, ","))
		}
		tw.Flush()
		for _, v := range views {
			fmt.Fprintf(stdout, "\n%s:\n", v.Node.Name)
			if v.Err != "" {
				fmt.Fprintf(stdout, "  error: %s\n", v.Err)
			}
			var bv bgpView
			if v.Status != nil && json.Unmarshal(v.Status, &bv) == nil {
				for _, p := range bv.BGP.Peers {
					fmt.Fprintf(stdout, "  peer %-14s %-15s %-12s accepted %d\n", p.Name, p.Address, p.State, p.Accepted)
				}
			}
			for _, r := range v.Routes {
				fmt.Fprintf(stdout, "  route %s\n", r)
			}
		}
		return nil
	}
	return cmd
}

func lanStr(n *lab.Node) string {
	if !n.LANAddr.IsValid() {
		return "-"
	}
	return n.LANAddr.String() + " " + n.LANLink.Interface
}
