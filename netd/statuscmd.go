package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/ducksnest/netd/netd/daemon"
	"github.com/ducksnest/netd/netd/tailnetsync"
)

func newStatusCmd() *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "status",
		Short: "show a running netd's peers, routes and drift",
		Long: `Asks the netd running on this node (over its unix socket) for its status:
BGP peers, advertised and installed routes, drift, LAN paths, the Calico
and Tailscale parts, reconcilers. Exit status 1 when the kernel drifted
from the desired routes or the last policy reload was rejected (text
output).`,
		Example: `  netd status
  netd status -o json | jq '.bgp.peers[] | {name, state}'`,
		Args: noArgs,
	}
	fs := cmd.Flags()
	socket := fs.String("socket", envOr("NETD_SOCKET", "/run/netd/netd.sock"), "the daemon's unix socket")
	addOutputFlag(cmd, &output, "text", "text", "json", "yaml")
	addJSONAlias(cmd, &output)
	cmd.RunE = func(cmd *cobra.Command, _ []string) error {
		ctx, stdout := cmd.Context(), cmd.OutOrStdout()
		st, raw, err := daemon.StatusClient{Socket: *socket}.Status(ctx)
		if err != nil {
			return unreadable{err}
		}
		if output != "text" {
			return writeJSONAs(stdout, output, raw)
		}
		printStatus(stdout, st)
		if !st.Drift.Empty() || st.Policy.LastError != "" || tailnetPolicyDrift(st.TailnetPolicy) {
			return exitError{code: 1}
		}
		return nil
	}
	return cmd
}

func printStatus(w io.Writer, st daemon.Status) {
	fmt.Fprintf(w, "node %s  ready=%v  bgp-synced=%v\n", st.Node, st.Ready, st.Synced)
	fmt.Fprintf(w, "policy %s  %s  loaded %s\n", st.Policy.Path, shortDigest(st.Policy.Digest), st.Policy.LoadedAt.Format(time.RFC3339))
	if st.Policy.LastError != "" {
		fmt.Fprintf(w, "  LAST RELOAD REJECTED (last good policy kept): %s\n", st.Policy.LastError)
	}
	fmt.Fprintf(w, "\nBGP  asn %d  router-id %s\n", st.BGP.ASN, st.BGP.RouterID)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PEER\tADDRESS\tASN\tSTATE\tUPTIME\tRECEIVED\tACCEPTED\tREJECTED\tADVERTISED")
	for _, p := range st.BGP.Peers {
		var rej []string
		for r, n := range p.Rejected {
			rej = append(rej, fmt.Sprintf("%s=%d", r, n))
		}
		fmt.Fprintf(tw, "  %s\t%s\t%d\t%s\t%s\t%d\t%d\t%s\t%d\n", p.Name, p.Address, p.ASN, p.State, p.Uptime,
			p.Received, p.Accepted, orDash(strings.Join(rej, ",")), p.Advertised)
	}
	tw.Flush()
	printBFD(w, st.BFD)
	fmt.Fprintf(w, "\nadvertised: %v (from %s)\n", st.Advertised, st.PodSource)
	if c := st.Cluster; c != nil {
		fmt.Fprintf(w, "kubernetes: block affinities synced=%v, calico sync=%v, lease holder=%v\n", c.AffinitySynced, c.SyncCalico, c.Leader)
		if c.CalicoAPI != nil {
			fmt.Fprintf(w, "  calico API: %s (writes %s; block affinities %s, IPAM blocks %s)\n", c.CalicoAPI.Served,
				c.CalicoAPI.GroupVersion, c.CalicoAPI.BlockAffinities.GroupVersion(), c.CalicoAPI.IPAMBlocks.GroupVersion())
		}
		for _, e := range []struct{ what, err string }{
			{"calico API", c.CalicoAPIError}, {"block affinities", c.AffinityError}, {"lease", c.LeaseError},
		} {
			if e.err != "" {
				fmt.Fprintf(w, "  %s error: %s\n", e.what, e.err)
			}
		}
		if cs := c.Calico; cs != nil {
			for _, p := range cs.Pending {
				fmt.Fprintf(w, "  pending %s %s: %s\n", p.Kind, p.Name, p.Reason)
			}
			for _, p := range cs.Unowned {
				fmt.Fprintf(w, "  not ours %s %s: %s\n", p.Kind, p.Name, p.Reason)
			}
			if cs.Error != "" {
				fmt.Fprintf(w, "  calico error: %s\n", cs.Error)
			}
		}
	}
	if t := st.Tailnet; t != nil {
		fmt.Fprintf(w, "tailnet: advertised %v, user routes %v, accept-routes=%v\n", t.Advertised, t.UserRoutes, t.AcceptRoutes)
		if len(t.Unapproved) > 0 || len(t.NotAutoApproved) > 0 {
			fmt.Fprintf(w, "  NOT APPROVED: %v (not auto-approved by the policy: %v)\n", t.Unapproved, t.NotAutoApproved)
		}
		if t.Error != "" {
			fmt.Fprintf(w, "  tailnet error: %s\n", t.Error)
		}
	}
	printTailnetPolicy(w, st.TailnetPolicy)
	if len(st.LANPaths) > 0 {
		fmt.Fprintln(w, "\nLAN paths")
		for _, p := range st.LANPaths {
			state := "up"
			if !p.Up {
				state = "DOWN"
			}
			fmt.Fprintf(w, "  %-14s %-15s %-4s since %s rtt %s\n", p.Name, p.Addr, state, p.Since.Format(time.TimeOnly), orDash(p.LastRTT))
		}
	}
	fmt.Fprintln(w, "\nroutes (desired)")
	tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PREFIX\tVIA\tPATH\tPEER\tMTU")
	for _, r := range st.Desired {
		var via []string
		for _, h := range r.NextHops {
			via = append(via, h.Gateway.String()+" dev "+h.Device)
		}
		paths := make([]string, len(r.Paths))
		for i, p := range r.Paths {
			paths[i] = string(p)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\t%d\n", r.Dst, strings.Join(via, ", "), strings.Join(paths, ","), strings.Join(r.Peers, ","), r.MTU)
	}
	tw.Flush()
	for _, u := range st.Unroutable {
		fmt.Fprintf(w, "  not installed: %s: %s\n", u.Prefix, u.Reason)
	}
	if st.Drift.Empty() {
		fmt.Fprintf(w, "\nkernel: %d routes installed, no drift\n", len(st.Installed))
	} else {
		fmt.Fprintf(w, "\nkernel: %d routes installed, DRIFT: %+v\n", len(st.Installed), st.Drift)
	}
	fmt.Fprintln(w, "\nreconcilers")
	for _, r := range st.Reconcilers {
		fmt.Fprintf(w, "  %-7s runs=%d failures=%d last=%s %s\n", r.Name, r.Runs, r.Failures, r.Duration, orDash(r.LastError))
	}
}

// printBFD prints the BFD sessions, then a warning for each session that
// never came up.
func printBFD(w io.Writer, b *daemon.BFDStatus) {
	if b == nil {
		fmt.Fprintln(w, "\nBFD  off")
		return
	}
	fmt.Fprintf(w, "\nBFD  interval %s  multiplier %d\n", b.Interval, b.Multiplier)
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  PEER\tADDRESS\tSTATE\tADMITTED\tEVER-UP\tCHANGES\tLAST-CHANGE\tDIAG\tLOCAL TX/RX xMULT\tREMOTE TX/RX xMULT")
	for _, p := range b.Peers {
		last := "-"
		if !p.LastChange.IsZero() {
			last = p.LastChange.Format(time.TimeOnly)
		}
		remote := "-"
		if p.Remote.Multiplier != 0 {
			remote = fmt.Sprintf("%s/%s x%d", p.Remote.DesiredMinTx, p.Remote.RequiredMinRx, p.Remote.Multiplier)
		}
		fmt.Fprintf(tw, "  %s\t%s\t%s\t%v\t%v\t%d\t%s\t%s\t%s/%s x%d\t%s\n", orDash(p.Name), p.Peer, p.State, p.Admitted, p.EverUp,
			p.Changes, last, orDash(p.Diag), p.Local.DesiredMinTx, p.Local.RequiredMinRx, p.Local.Multiplier, remote)
	}
	tw.Flush()
	for _, p := range b.Peers {
		if p.Warning != "" {
			fmt.Fprintf(w, "  WARNING bfd %s: %s\n", orDash(p.Name), p.Warning)
		}
	}
}

// printTailnetPolicy prints the tailnet policy writer's section.
func printTailnetPolicy(w io.Writer, t *tailnetsync.Status) {
	if t == nil {
		return
	}
	role := "standby"
	if t.Leading {
		role = "WRITER"
	}
	fmt.Fprintf(w, "tailnet policy: %s on %s; writer %s (%s), ownership %s, re-check every %s\n", role, t.Target,
		orDash(t.Writer), t.Mode, map[bool]string{false: "shared", true: "exclusive"}[t.Exclusive], t.Interval)
	if t.RoleError != "" {
		fmt.Fprintf(w, "  writer: %s\n", t.RoleError)
	}
	if !t.Leading {
		return
	}
	fmt.Fprintf(w, "  in sync=%v  version %s  digest %s  writes %d  last check %s  last write %s\n", t.InSync, orDash(t.Version),
		shortDigest(t.Digest), t.Writes, timeOrDash(t.LastCheck), timeOrDash(t.LastWrite))
	if t.Drift != "" {
		fmt.Fprintf(w, "  DRIFT since %s: %s\n", timeOrDash(t.DriftSince), t.Drift)
		for _, l := range strings.Split(strings.TrimRight(t.DriftDiff, "\n"), "\n") {
			fmt.Fprintf(w, "    %s\n", l)
		}
	}
	if t.Blocked != "" {
		fmt.Fprintf(w, "  NOT APPLIED: %s\n", t.Blocked)
	}
	for _, p := range t.RouteProblems {
		fmt.Fprintf(w, "  POD ROUTES: %s\n", p)
	}
	if t.Error != "" {
		fmt.Fprintf(w, "  error: %s\n", t.Error)
	}
}

// tailnetPolicyDrift reports whether the writer sees drift or unapproved
// pod routes (netd status then exits 1, as for kernel drift).
func tailnetPolicyDrift(t *tailnetsync.Status) bool {
	return t != nil && t.Leading && (t.Drift != "" || len(t.RouteProblems) > 0)
}

func timeOrDash(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.Format(time.RFC3339)
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
