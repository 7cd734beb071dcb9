package doctor

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// Clock skew limits: TLS and the API server's tokens tolerate little;
// Kubernetes' token validation allows a minute of leeway.
const (
	skewWarn = 2 * time.Second
	skewFail = 60 * time.Second
)

// clockCheck: this node's clock against every peer's (ICMP timestamps,
// RFC 792 types 13/14, millisecond resolution) and against the API
// server's (its HTTP Date header, second resolution).
type clockCheck struct{}

func (clockCheck) Name() string { return "clock" }

func (clockCheck) Run(ctx context.Context, in *Input) []Finding {
	peers := nodePeers(in.Node)
	out := make([]Finding, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() {
			id := "peer:" + p.Name
			r, err := in.Host.Prober.Timestamp(ctx, in.Node.OverlayAddr, p.Address, probeTimeout)
			switch {
			case err != nil:
				out[i] = Finding{ID: id, Result: Warn, Summary: "cannot ask " + p.Name + " for its time", Evidence: []string{err.Error()}}
			case !r.Reply:
				out[i] = Finding{ID: id, Result: Warn, Summary: p.Name + " does not answer ICMP timestamp requests: its clock is not checked",
					Evidence: []string{fmt.Sprintf("ICMP timestamp request %s -> %s: no answer within %v", in.Node.OverlayAddr, p.Address, probeTimeout)},
					Fix: "let ICMP timestamp requests in from the overlay on the peers (NixOS: networking.firewall.extraCommands = \"iptables -A nixos-fw -i " + in.State.Overlay.Interface +
						" -p icmp --icmp-type timestamp-request -j nixos-fw-accept\";) and allow ICMP between nodes in the tailnet policy; or compare `chronyc tracking` on both"}
			default:
				out[i] = skewFinding(id, p.Name, r.Offset, r.RTT/2+time.Millisecond,
					fmt.Sprintf("ICMP timestamp %s -> %s: peer clock %s against ours (round trip %v)", in.Node.OverlayAddr, p.Address, signed(r.Offset), r.RTT.Round(time.Microsecond)))
			}
		})
	}
	wg.Wait()
	if c := in.Host.Cluster; c != nil {
		t0 := in.Host.now()
		srv, rtt, err := c.ServerTime(ctx)
		if err != nil {
			out = append(out, Finding{ID: "apiserver", Result: Warn, Summary: "cannot read the API server's time", Evidence: []string{err.Error()}})
		} else {
			// Date has whole seconds: the server's time was in [Date, Date+1s).
			mid := t0.Add(rtt / 2)
			off := srv.Add(500 * time.Millisecond).Sub(mid)
			out = append(out, skewFinding("apiserver", "the API server", off, 500*time.Millisecond+rtt/2,
				fmt.Sprintf("API server Date %s, our clock at mid-request %s: offset %s ± %v", srv.Format(time.RFC1123), mid.UTC().Format("15:04:05.000"), signed(off), (500*time.Millisecond+rtt/2).Round(time.Millisecond))))
		}
	}
	if len(out) == 0 {
		out = append(out, pass("peers", "no peers to compare clocks with"))
	}
	return out
}

func skewFinding(id, who string, off, accuracy time.Duration, ev string) Finding {
	abs := off.Abs() - accuracy
	f := Finding{ID: id, Evidence: []string{ev}}
	switch {
	case abs > skewFail:
		f.Result, f.Summary = Fail, fmt.Sprintf("clock differs from %s by %v", who, off.Round(time.Millisecond))
	case abs > skewWarn:
		f.Result, f.Summary = Warn, fmt.Sprintf("clock differs from %s by %v", who, off.Round(time.Millisecond))
	default:
		return pass(id, fmt.Sprintf("clock within %v of %s", skewWarn, who), ev)
	}
	f.Why = "certificates (kubelet and netd client certificates, the API server's serving certificate) are refused before their NotBefore and after their NotAfter, and service account tokens beyond a minute of leeway; a clock off by that much breaks TLS to the API server"
	f.Fix = "run time sync on every node (NixOS: services.chrony.enable = true or services.timesyncd) and check `chronyc tracking` / `timedatectl`"
	return f
}

// signed renders d to the millisecond with its sign.
func signed(d time.Duration) string {
	d = d.Round(time.Millisecond)
	if d >= 0 {
		return "+" + d.String()
	}
	return d.String()
}
