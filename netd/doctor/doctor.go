// Package doctor checks a live node against the policy: the kernel settings,
// tailscaled's prefs, the firewall marks of Tailscale, Calico and
// kube-proxy, Felix's live configuration, the overlay MTU and the path MTU
// to every peer, where BGP listens, netd's own routing table and rule and
// what could shadow them, the clock against the peers, and netd's own
// status. Every check says pass, warn, fail or skip, what it read (the
// evidence) and how to fix what it found.
//
// The host is read through narrow interfaces (Host): the kernel through
// nl.Kernel, sysctls, the firewall dumps (iptables-save, nft -j), the
// listening sockets, an ICMP prober, the tailscaled LocalAPI, netd's status
// socket and the Kubernetes API. Each check is tested with fakes of them,
// and on the lab (e2e) with the real ones. `netd doctor` is the command.
package doctor

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/netip"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/ducksnest/netd/policy/desired"
)

// Result is the outcome of one finding.
type Result string

// Results, from best to worst; Skip means the check could not run because
// an input was not given (no kubeconfig found, no tailscaled socket).
const (
	Pass Result = "pass"
	Skip Result = "skip"
	Warn Result = "warn"
	Fail Result = "fail"
)

func (r Result) rank() int {
	switch r {
	case Fail:
		return 3
	case Warn:
		return 2
	case Skip:
		return 1
	}
	return 0
}

// Finding is one thing a check found.
type Finding struct {
	// ID is stable across runs and versions: "<check>/<item>", e.g.
	// "sysctl/rp_filter:tailscale0".
	ID      string `json:"id"`
	Check   string `json:"check"`
	Result  Result `json:"result"`
	Summary string `json:"summary"`
	// Evidence is what the check read, one fact per line.
	Evidence []string `json:"evidence,omitempty"`
	// Why explains the consequence, Fix the command or configuration
	// change (NixOS option where there is one).
	Why string `json:"why,omitempty"`
	Fix string `json:"fix,omitempty"`
}

// Check is one group of checks.
type Check interface {
	// Name is the check's id, the first part of its findings' IDs.
	Name() string
	// Run reads the host and returns at least one finding.
	Run(ctx context.Context, in *Input) []Finding
}

// Input is what every check gets: the compiled policy, this node in it,
// and the host.
type Input struct {
	State *desired.State
	Node  *desired.Node
	Host  Host
}

// Host is how checks read the live node. A nil optional part makes the
// checks that need it skip.
type Host struct {
	Kernel   Kernel
	Sysctl   Sysctl
	Firewall Firewall
	Sockets  Sockets
	Prober   Prober
	// Optional.
	Tailscale TailscaleAPI
	Netd      NetdStatus
	Cluster   Cluster
	// Now is the clock (time.Now if nil).
	Now func() time.Time
}

func (h Host) now() time.Time {
	if h.Now != nil {
		return h.Now()
	}
	return time.Now()
}

// Checks returns every check, in the order they are reported.
func Checks() []Check {
	return []Check{
		sysctlCheck{}, overlayMTUCheck{}, routingCheck{}, shadowCheck{}, listenCheck{},
		tailscaleCheck{}, cgnatCheck{}, fwmarkCheck{}, felixCheck{}, pathMTUCheck{},
		clockCheck{}, netdCheck{},
	}
}

// CheckTimeout bounds one check.
const CheckTimeout = 30 * time.Second

// SchemaVersion is the version of the JSON report; it changes only when a
// field changes meaning or goes away.
const SchemaVersion = 1

// Report is the outcome of a run: the JSON document of `netd doctor -o
// json`.
type Report struct {
	SchemaVersion int            `json:"schemaVersion"`
	Node          string         `json:"node"`
	Policy        string         `json:"policy"`
	Digest        string         `json:"digest"`
	Time          time.Time      `json:"time"`
	Result        Result         `json:"result"`
	Counts        map[Result]int `json:"counts"`
	Findings      []Finding      `json:"findings"`
}

// Run runs checks in order and collects their findings.
func Run(ctx context.Context, in *Input, checks []Check) *Report {
	r := &Report{SchemaVersion: SchemaVersion, Node: in.Node.Name, Policy: in.State.Source, Digest: in.State.Digest,
		Time: in.Host.now().UTC(), Result: Pass, Counts: map[Result]int{Pass: 0, Warn: 0, Fail: 0, Skip: 0}}
	for _, c := range checks {
		cctx, cancel := context.WithTimeout(ctx, CheckTimeout)
		fs := c.Run(cctx, in)
		cancel()
		for _, f := range fs {
			f.Check = c.Name()
			if !strings.Contains(f.ID, "/") {
				f.ID = c.Name() + "/" + f.ID
			}
			r.Findings = append(r.Findings, f)
			r.Counts[f.Result]++
			if f.Result.rank() > r.Result.rank() && f.Result != Skip {
				r.Result = f.Result
			}
		}
	}
	return r
}

// ExitCode is 1 if any finding failed, else 0 (warnings and skips pass).
func (r *Report) ExitCode() int {
	if r.Result == Fail {
		return 1
	}
	return 0
}

// WriteJSON writes the report as indented JSON.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteText writes a table of the findings, then the evidence, why and fix
// of every finding that did not pass (all of them with verbose).
func (r *Report) WriteText(w io.Writer, verbose bool) error {
	fmt.Fprintf(w, "netd doctor: node %s, policy %s (%s)\n\n", r.Node, r.Policy, shortDigest(r.Digest))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tCHECK\tSUMMARY")
	for _, f := range r.Findings {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", strings.ToUpper(string(f.Result)), f.ID, f.Summary)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, f := range r.Findings {
		if !verbose && (f.Result == Pass || f.Result == Skip) {
			continue
		}
		fmt.Fprintf(w, "\n%s %s: %s\n", strings.ToUpper(string(f.Result)), f.ID, f.Summary)
		for _, e := range f.Evidence {
			fmt.Fprintf(w, "  read: %s\n", e)
		}
		if f.Why != "" {
			fmt.Fprintf(w, "  why:  %s\n", f.Why)
		}
		if f.Fix != "" {
			fmt.Fprintf(w, "  fix:  %s\n", strings.ReplaceAll(f.Fix, "\n", "\n        "))
		}
	}
	_, err := fmt.Fprintf(w, "\n%d passed, %d warnings, %d failed, %d skipped\n", r.Counts[Pass], r.Counts[Warn], r.Counts[Fail], r.Counts[Skip])
	return err
}

func shortDigest(d string) string {
	if len(d) > 19 {
		return d[:19]
	}
	return d
}

// nodePeers are the node's BGP peers that are other cluster nodes, with
// their overlay addresses.
func nodePeers(n *desired.Node) []desired.Peer {
	var out []desired.Peer
	for _, p := range n.BGP.Peers {
		if p.Kind == desired.PeerNode {
			out = append(out, p)
		}
	}
	return out
}

// otherBlocks are the static pod blocks of every node but self, by node.
func otherBlocks(st *desired.State, self string) map[netip.Prefix]string {
	out := map[netip.Prefix]string{}
	for _, n := range st.Nodes {
		if n.Name == self {
			continue
		}
		for _, b := range n.PodCIDRs {
			out[b] = n.Name
		}
	}
	return out
}

func pass(id, summary string, evidence ...string) Finding {
	return Finding{ID: id, Result: Pass, Summary: summary, Evidence: evidence}
}

func skip(id, summary string) Finding {
	return Finding{ID: id, Result: Skip, Summary: summary}
}
