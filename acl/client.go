package acl

import (
	"context"
	"net/netip"
	"slices"
	"strings"

	"github.com/ducksnest/netd/policy/desired"
)

// Client is a connection to one control server, built once and reused (a
// Tailscale OAuth token is then fetched once per expiry, not per call): what
// a long-running writer such as the netd daemon holds.
type Client struct {
	b backend
}

// NewClient connects to target (it sends nothing yet).
func NewClient(target Target) (*Client, error) {
	b, err := target.backend()
	if err != nil {
		return nil, err
	}
	return &Client{b: b}, nil
}

// Name names the control server without its secrets.
func (c *Client) Name() string { return c.b.name() }

// Diff is Diff on this client's control server.
func (c *Client) Diff(ctx context.Context, t *desired.Tailnet) (Change, error) {
	return diff(ctx, c.b, t)
}

// Apply is Apply on this client's control server.
func (c *Client) Apply(ctx context.Context, t *desired.Tailnet, opts Options) (Result, error) {
	return apply(ctx, c.b, t, opts)
}

// ApplyChange is Apply with the live policy already read by Diff (c): it
// saves reading it again, and the write is still conditional on the
// version c read (If-Match / updatedAt), so an edit made since is a
// conflict, never overwritten.
func (c *Client) ApplyChange(ctx context.Context, t *desired.Tailnet, ch Change, opts Options) (Result, error) {
	return applyChange(ctx, c.b, t, ch, opts)
}

// Routes lists the subnet routes of every node of the tailnet: what each
// advertises and what the control server approved.
func (c *Client) Routes(ctx context.Context) ([]NodeRoutes, error) { return c.b.routes(ctx) }

// NodeRoutes are one tailnet node's subnet routes as the control server
// sees them.
type NodeRoutes struct {
	// Name is the node's name on the control server (its hostname).
	Name string `json:"name"`
	// Addrs are its tailnet addresses.
	Addrs []netip.Addr `json:"addrs"`
	// Advertised are the routes the node announces; Approved those the
	// control server serves to peers (approved by autoApprovers or by
	// hand), advertised or not.
	Advertised []netip.Prefix `json:"advertised,omitempty"`
	Approved   []netip.Prefix `json:"approved,omitempty"`
}

// parseAddrs and parsePrefixes keep what parses (a control server may list
// IPv6 forms or names netd does not use) and sort the result.
func parseAddrs(ss []string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		if a, err := netip.ParseAddr(strings.TrimSpace(s)); err == nil {
			out = append(out, a)
		}
	}
	slices.SortFunc(out, func(a, b netip.Addr) int { return a.Compare(b) })
	return out
}

func parsePrefixes(ss ...[]string) []netip.Prefix {
	var out []netip.Prefix
	for _, l := range ss {
		for _, s := range l {
			if p, err := netip.ParsePrefix(strings.TrimSpace(s)); err == nil && !slices.Contains(out, p.Masked()) {
				out = append(out, p.Masked())
			}
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return out
}
