package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/ducksnest/netd/netd/localapi"
)

// headscale 0.26.1 sometimes stops serving a node's approved routes. When
// a map session ends, its cleanup clears the node's primary routes
// (hscontrol/poll.go: primaryRoutes.SetRoutes(node.ID)); on a fast
// reconnect (tailscaled reconnects when netd first advertises the node's
// pod blocks) it can run after the new session has set them. headscale
// then lists the routes as approved and available but not as subnet
// (primary) routes, every peer's tailscaled drops them, and the node's
// netd reports its blocks unapproved (as a real node would: the
// NetdTailnetRoutesUnapproved alert names the remedy). Approving the same
// routes again serves them: the lab does that while it runs (keepServed)
// and while it waits for the routes (WaitRoutes), counted in ReApproved.
// This is the one place the tailnet lab helps its control server.

// reapproveEvery is how often a node's routes may be approved again by
// hand.
const reapproveEvery = 5 * time.Second

// WaitRoutes polls until every node sees every other node's pod blocks as
// that peer's routes. A node whose blocks some peer still lacks after a
// few seconds gets them approved again by hand, at most every
// reapproveEvery.
func (tn *Tailnet) WaitRoutes(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	for {
		missing, err := tn.missingRoutes(ctx)
		if err == nil && len(missing) == 0 {
			tn.lab.log.Info("tailnet routes served", "took", time.Since(start).Round(time.Millisecond), "reApproved", tn.Reapprovals())
			return tn.save()
		}
		if time.Since(start) > reapproveEvery {
			for owner := range missing {
				if err := tn.reapprove(ctx, owner, nil); err != nil {
					return err
				}
			}
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("tailnet routes not served: %v (last error: %w): %w", missing, err, ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// keepServed polls headscale every second until ctx ends, and approves
// again the routes of an online node whose approved, announced routes
// headscale has not served in two polls running. Routes that are not approved (a
// test that revokes them) or not announced are left alone.
func (tn *Tailnet) keepServed(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	seen := map[uint64]bool{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ns, err := tn.hsNodes(ctx)
		if err != nil {
			continue // headscale restarting, or the lab going down
		}
		for _, n := range ns {
			// An offline node's routes are not served, rightly.
			if !n.Online || len(n.unserved()) == 0 {
				delete(seen, n.ID)
				continue
			}
			if !seen[n.ID] {
				seen[n.ID] = true
				continue
			}
			delete(seen, n.ID)
			for _, ln := range tn.lab.Nodes {
				if slices.Contains(n.IPAddresses, ln.OverlayAddr.String()) {
					if err := tn.reapprove(ctx, ln.Name, ns); err != nil && ctx.Err() == nil {
						tn.lab.log.Warn("approving a node's routes again", "node", ln.Name, "err", err)
					}
				}
			}
		}
	}
}

// missingRoutes maps an owner node to the viewers that lack its blocks.
func (tn *Tailnet) missingRoutes(ctx context.Context) (map[string][]string, error) {
	missing := map[string][]string{}
	for _, viewer := range tn.lab.Nodes {
		routes, err := localapi.PeerRoutes(ctx, tn.Client(viewer.Name))
		if err != nil {
			return nil, err
		}
		c := localapi.Checker{Overlay: netip.MustParsePrefix("100.64.0.0/10"), Routes: routes}
		for _, owner := range tn.lab.Nodes {
			if owner == viewer {
				continue
			}
			for _, b := range owner.PodCIDRs {
				if c.Check(b, owner.OverlayAddr) != nil {
					missing[owner.Name] = append(missing[owner.Name], viewer.Name)
					break
				}
			}
		}
	}
	return missing, nil
}

// hsNode is a node as `headscale nodes list -o json` prints it.
type hsNode struct {
	ID              uint64   `json:"id"`
	Name            string   `json:"name"`
	GivenName       string   `json:"given_name"`
	IPAddresses     []string `json:"ip_addresses"`
	ApprovedRoutes  []string `json:"approved_routes"`
	AvailableRoutes []string `json:"available_routes"`
	SubnetRoutes    []string `json:"subnet_routes"` // served (primary)
	Online          bool     `json:"online"`
}

// unserved are the routes headscale lists as approved and announced but
// does not serve.
func (n hsNode) unserved() []string {
	var out []string
	for _, r := range n.ApprovedRoutes {
		if slices.Contains(n.AvailableRoutes, r) && !slices.Contains(n.SubnetRoutes, r) {
			out = append(out, r)
		}
	}
	return out
}

func (tn *Tailnet) hsNodes(ctx context.Context) ([]hsNode, error) {
	out, err := tn.hs(ctx, "nodes", "list", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ns []hsNode
	if err := json.Unmarshal([]byte(out), &ns); err != nil {
		return nil, fmt.Errorf("decoding headscale nodes: %w", err)
	}
	return ns, nil
}

// reapprove approves a lab node's pod blocks again, unless that was done
// in the last reapproveEvery. ns is headscale's node list when the caller
// has just read it (nil: read it here).
func (tn *Tailnet) reapprove(ctx context.Context, node string, ns []hsNode) error {
	tn.mu.Lock()
	if tn.approvedAt == nil {
		tn.approvedAt = map[string]time.Time{}
	}
	if time.Since(tn.approvedAt[node]) < reapproveEvery {
		tn.mu.Unlock()
		return nil
	}
	tn.approvedAt[node] = time.Now()
	tn.mu.Unlock()

	if ns == nil {
		var err error
		if ns, err = tn.hsNodes(ctx); err != nil {
			return err
		}
	}
	n, err := tn.lab.Node(node)
	if err != nil {
		return err
	}
	for _, h := range ns {
		if !slices.Contains(h.IPAddresses, n.OverlayAddr.String()) {
			continue
		}
		rs := slices.Clone(h.ApprovedRoutes) // keep what else is approved
		for _, b := range n.PodCIDRs {
			if !slices.Contains(rs, b.String()) {
				rs = append(rs, b.String())
			}
		}
		tn.lab.log.Warn("headscale does not serve the approved routes of a node; approving them again (headscale 0.26.1)", "node", node, "routes", rs, "unserved", h.unserved())
		if _, err := tn.hs(ctx, "nodes", "approve-routes", "-i", fmt.Sprint(h.ID), "-r", strings.Join(rs, ",")); err != nil {
			return err
		}
		tn.mu.Lock()
		tn.ReApproved++
		tn.mu.Unlock()
		return nil
	}
	return fmt.Errorf("node %s (%s) is not in headscale", node, n.OverlayAddr)
}

// Reapprovals is how many times the lab approved a node's routes again.
func (tn *Tailnet) Reapprovals() int {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	return tn.ReApproved
}
