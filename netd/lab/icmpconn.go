package lab

import (
	"context"
	"fmt"
	"net"
	"net/netip"

	"github.com/ducksnest/netd/netd/probe"
)

// ListenICMP opens a raw ICMP socket bound to src inside namespace ns (the
// IP header is stripped on read), set up as o says: the lab's pings and
// the probers outside this package (chaos) use it.
func ListenICMP(ctx context.Context, ns string, src netip.Addr, o probe.Socket) (*net.IPConn, error) {
	var c *net.IPConn
	err := InNS(ns, func() error {
		var err error
		if c, err = probe.ListenICMP(ctx, src, o); err != nil {
			return fmt.Errorf("opening raw icmp socket on %s: %w", src, err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return c, nil
}
