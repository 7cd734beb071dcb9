package nl

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// dumpRetries is how often a dump interrupted by a concurrent change is
// tried again (kube-router's nlretry does the same).
const dumpRetries = 5

// Netlink is the real Kernel: reads and rule writes on a *netlink.Handle,
// route writes in batches on a raw NETLINK_ROUTE socket, both in one
// network namespace.
type Netlink struct {
	h *netlink.Handle
	b *batcher
}

var _ Kernel = (*Netlink)(nil)

// Options tune Open.
type Options struct {
	// BatchBytes is the most route message bytes per sendmsg
	// (DefaultBatchBytes if 0).
	BatchBytes int
	// AckErrorsOnly asks for an ACK only on the last message of each
	// sendmsg; the kernel still reports every failed message. It saves one
	// ACK per route (measured in BenchmarkInstall); off by default.
	AckErrorsOnly bool
}

// Open returns a Kernel working in ns, or in the current network namespace
// if ns is not open (netns.None()).
func Open(ns netns.NsHandle, opts Options) (*Netlink, error) {
	if opts.BatchBytes <= 0 {
		opts.BatchBytes = DefaultBatchBytes
	}
	var (
		h   *netlink.Handle
		err error
	)
	if ns.IsOpen() {
		h, err = netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	} else {
		h, err = netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	if err != nil {
		return nil, fmt.Errorf("opening netlink handle: %w", err)
	}
	b, err := openBatcher(ns, opts.BatchBytes, opts.AckErrorsOnly)
	if err != nil {
		h.Close()
		return nil, err
	}
	return &Netlink{h: h, b: b}, nil
}

// Close releases the sockets.
func (n *Netlink) Close() error {
	n.h.Close()
	return n.b.close()
}

// Handle is the underlying netlink handle (for tests and benchmarks).
func (n *Netlink) Handle() *netlink.Handle { return n.h }

// retryDump runs f again while it reports an interrupted dump.
func retryDump(ctx context.Context, what string, f func() error) error {
	var err error
	for range dumpRetries {
		if err = f(); !errors.Is(err, netlink.ErrDumpInterrupted) {
			if err != nil {
				return fmt.Errorf("listing %s: %w", what, err)
			}
			return nil
		}
		if cerr := ctx.Err(); cerr != nil {
			return cerr
		}
	}
	return fmt.Errorf("listing %s: still interrupted after %d tries: %w", what, dumpRetries, err)
}

// ListRoutes implements Kernel.
func (n *Netlink) ListRoutes(ctx context.Context, table int) ([]Route, error) {
	var out []Route
	err := retryDump(ctx, fmt.Sprintf("routes in table %d", table), func() error {
		var err error
		out, err = n.b.dumpRoutes(table)
		return err
	})
	return out, err
}

// ListRules implements Kernel.
func (n *Netlink) ListRules(ctx context.Context) ([]Rule, error) {
	var rules []netlink.Rule
	err := retryDump(ctx, "rules", func() error {
		var err error
		rules, err = n.h.RuleList(netlink.FAMILY_V4)
		return err
	})
	if err != nil {
		return nil, err
	}
	out := make([]Rule, 0, len(rules))
	for i := range rules {
		r := &rules[i]
		sel := r.Src != nil || r.Dst != nil || r.Mark != 0 || (r.Mask != nil && *r.Mask != 0) ||
			r.IifName != "" || r.OifName != "" || r.Invert || r.Tos != 0 || r.TunID != 0 ||
			r.Goto >= 0 || r.Flow > 0 || r.Dport != nil || r.Sport != nil || r.UIDRange != nil ||
			r.IPProto != 0 || r.SuppressPrefixlen >= 0 || r.SuppressIfgroup >= 0
		out = append(out, Rule{
			Priority:  r.Priority,
			Table:     r.Table,
			Protocol:  int(r.Protocol),
			Selectors: sel,
			Desc:      r.String(),
		})
	}
	return out, nil
}

func toNetlinkRule(r Rule) (*netlink.Rule, error) {
	if r.Selectors {
		return nil, errors.New("cannot write a rule with selectors")
	}
	nr := netlink.NewRule()
	nr.Family = netlink.FAMILY_V4
	nr.Priority = r.Priority
	nr.Table = r.Table
	nr.Protocol = uint8(r.Protocol)
	return nr, nil
}

// AddRule implements Kernel.
func (n *Netlink) AddRule(ctx context.Context, r Rule) error {
	nr, err := toNetlinkRule(r)
	if err == nil {
		err = n.h.RuleAdd(nr)
	}
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return fmt.Errorf("adding rule %v: %w", r, err)
	}
	return nil
}

// DelRule implements Kernel.
func (n *Netlink) DelRule(ctx context.Context, r Rule) error {
	nr, err := toNetlinkRule(r)
	if err == nil {
		err = n.h.RuleDel(nr)
	}
	if err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting rule %v: %w", r, err)
	}
	return nil
}

// Apply implements Kernel: the ops go out in batches of several messages per
// sendmsg.
func (n *Netlink) Apply(ctx context.Context, ops []Op) []error {
	return n.b.apply(ctx, ops)
}

// LinkIndex implements Kernel.
func (n *Netlink) LinkIndex(ctx context.Context, name string) (int, error) {
	l, err := n.h.LinkByName(name)
	if err != nil {
		return 0, fmt.Errorf("finding device %q: %w", name, err)
	}
	return l.Attrs().Index, nil
}

// LinkName implements Kernel.
func (n *Netlink) LinkName(ctx context.Context, index int) (string, error) {
	l, err := n.h.LinkByIndex(index)
	if err != nil {
		return "", fmt.Errorf("finding device %d: %w", index, err)
	}
	return l.Attrs().Name, nil
}

// AddrDevice implements Kernel. It reads the addresses each time (they are
// few), so a device renamed or re-addressed while netd runs is found on the
// next call.
func (n *Netlink) AddrDevice(ctx context.Context, a netip.Addr) (string, error) {
	var addrs []netlink.Addr
	err := retryDump(ctx, "addresses", func() error {
		var err error
		addrs, err = n.h.AddrList(nil, netlink.FAMILY_V4)
		return err
	})
	if err != nil {
		return "", err
	}
	for _, ad := range addrs {
		if ip, ok := netip.AddrFromSlice(ad.IP); ok && ip.Unmap() == a {
			return n.LinkName(ctx, ad.LinkIndex)
		}
	}
	return "", fmt.Errorf("no device has address %s", a)
}
