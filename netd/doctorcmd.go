package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/vishvananda/netns"

	"github.com/ducksnest/netd/netd/doctor"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/localapi"
	"github.com/ducksnest/netd/netd/routes/nl"
	"github.com/ducksnest/netd/policy"
)

const doctorLong = `Checks this node (run it as root on the node, or in its network namespace)
against the policy. Every finding is pass, warn, fail or skip (an input was
not given: no kubeconfig found, no tailscaled socket), with what was read
(the evidence), why it matters and the fix.

Checks (--only takes a comma-separated list of these names):
  sysctl      net.ipv4.ip_forward; rp_filter on the overlay, LAN and pod (cali*) devices
  mtu         the overlay device's MTU equals spec.overlay.mtu
  routing     netd's rule (spec.routing) present and ahead of tailscaled's table 52; netd's table holds only netd's routes
  shadow      routes over other nodes' pod blocks in tables looked up before netd's, in main; netd routes over local pods
  bgp-listen  BGP listens on the overlay address only (/proc/net/tcp)
  tailscale   tailscaled prefs: --accept-routes, --snat-subnet-routes=false, advertised = pod blocks, approved
  cgnat       tailscaled's 100.64.0.0/10 drop rule and what it would drop of the cluster's traffic
  fwmark      mark bits shared by Tailscale (0xff0000), Calico and kube-proxy (0xc000) in iptables-save / nft -j
  felix       FelixConfiguration default: interfaceExclude, mtuIfacePattern, iptablesMarkMask vs the policy
  pmtu        DF echo of the overlay MTU reaches every peer, one byte more does not
  clock       clock offset to every peer (ICMP timestamps) and the API server (Date header)
  netd        netd's status socket: policy loaded, BGP and BFD sessions up, route drift, errors

The kubeconfig (felix, clock) is --kubeconfig, else $NETD_KUBECONFIG, else
found as kubectl finds it ($KUBECONFIG merged, ~/.kube/config); none found:
those checks are skipped.

Exit status: 0 when nothing failed (warnings and skips allowed), 1 when a
check failed, 2 on a usage error (bad flags, a policy that does not load,
a node not in the policy), 3 when the policy file could not be read.

-o json prints one document (schemaVersion 1; fields are only added within
a version; -o yaml has the same keys):
  {"schemaVersion":1, "node":..., "policy":..., "digest":..., "time":...,
   "result":"pass|warn|fail", "counts":{"pass":N,"warn":N,"fail":N,"skip":N},
   "findings":[{"id":"<check>/<item>", "check":..., "result":"pass|warn|fail|skip",
                "summary":..., "evidence":[...], "why":..., "fix":...}]}
Finding ids are stable, e.g. "sysctl/rp_filter:tailscale0", "pmtu/peer:ultra".`

func newDoctorCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "doctor",
		Short: "check this node against the policy (preflight and diagnosis)",
		Long:  doctorLong,
		Example: `  netd doctor --policy /etc/netd/policy.yaml --node firebat
  netd doctor --only sysctl,routing -v
  netd doctor -o json | jq '.findings[] | select(.result == "fail")'`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	host, _ := os.Hostname()
	policyPath := fs.String("policy", envOr("NETD_POLICY", "/etc/netd/policy.yaml"), "policy file, - for standard input (env NETD_POLICY)")
	node := fs.String("node", envOr("NETD_NODE", host), "this node's name in the policy (env NETD_NODE)")
	addOutputFlag(cmd, &output, "text", "text", "json", "yaml")
	verbose := fs.BoolP("verbose", "v", false, "text output: show the evidence of passing checks too")
	only := fs.String("only", "", "run only these checks (comma-separated names)")
	kubeconfig := fs.String("kubeconfig", envOr("NETD_KUBECONFIG", ""), "kubeconfig for the Felix check and the API server's clock (env NETD_KUBECONFIG; empty: found as kubectl does; none found: skip them)")
	kubeContext := fs.String("context", "", "the kubeconfig context to use (default: its current context)")
	tsSocket := fs.String("tailscale-socket", envOr("NETD_TAILSCALE_SOCKET", "/var/run/tailscale/tailscaled.sock"), "tailscaled's LocalAPI socket (empty: skip the tailscale check; the default is skipped when absent)")
	netdSocket := fs.String("netd-socket", envOr("NETD_SOCKET", "/run/netd/netd.sock"), "netd's status socket (empty: skip the netd check)")
	_ = cmd.RegisterFlagCompletionFunc("only", func(*cobra.Command, []string, string) ([]string, cobra.ShellCompDirective) {
		var names []string
		for _, c := range doctor.Checks() {
			names = append(names, c.Name())
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	})
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stdout := cmd.Context(), cmd.OutOrStdout()
		usageErr := func(format string, a ...any) error { return usageErrorf(cmd, format, a...) }
		checks, err := selectChecks(*only)
		if err != nil {
			return usageErr("%v", err)
		}
		f, err := loadPolicy(*policyPath, cmd.InOrStdin())
		if err != nil {
			if policyExit(err).code == exitCannotRead {
				return err
			}
			return usageErr("%v", err)
		}
		st, err := policy.Compile(f)
		if err != nil {
			return usageErr("%v", err)
		}
		self, err := st.Node(*node)
		if err != nil {
			return usageErr("%v (--node)", err)
		}
		k, err := nl.Open(netns.None(), nl.Options{})
		if err != nil {
			return err
		}
		defer k.Close()
		in := &doctor.Input{State: st, Node: self, Host: doctor.Host{
			Kernel: k, Sysctl: doctor.ProcSysctl{}, Firewall: doctor.CommandFirewall{},
			Sockets: doctor.ProcSockets{}, Prober: doctor.ICMPProber{},
		}}
		if *tsSocket != "" {
			if _, err := os.Stat(*tsSocket); err == nil || cmd.Flags().Changed("tailscale-socket") {
				in.Host.Tailscale = localapi.NewLocalClient(*tsSocket)
			}
		}
		if *netdSocket != "" {
			in.Host.Netd = doctor.NewSocketStatus(*netdSocket)
		}
		cfg, err := kube.Kubeconfig{Path: *kubeconfig, Context: *kubeContext}.Load()
		switch {
		case errors.Is(err, kube.ErrNoKubeconfig):
		case err != nil:
			return usageErr("%v", err)
		default:
			c, err := doctor.NewKubeCluster(cfg)
			if err != nil {
				return usageErr("%v", err)
			}
			in.Host.Cluster = c
		}
		rep := doctor.Run(ctx, in, checks)
		switch output {
		case "json":
			err = rep.WriteJSON(stdout)
		case "yaml":
			var b bytes.Buffer
			if err = rep.WriteJSON(&b); err == nil {
				err = writeJSONAs(stdout, "yaml", b.Bytes())
			}
		default:
			err = rep.WriteText(stdout, *verbose)
		}
		if err != nil {
			return err
		}
		if rep.ExitCode() != 0 {
			return exitError{code: rep.ExitCode()}
		}
		return nil
	}
	return cmd
}

// selectChecks returns the checks named in only (all if empty).
func selectChecks(only string) ([]doctor.Check, error) {
	all := doctor.Checks()
	if only == "" {
		return all, nil
	}
	var out []doctor.Check
	for name := range strings.SplitSeq(only, ",") {
		found := false
		for _, c := range all {
			if c.Name() == strings.TrimSpace(name) {
				out = append(out, c)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("--only: no check %q (netd doctor -h lists them)", name)
		}
	}
	return out, nil
}
