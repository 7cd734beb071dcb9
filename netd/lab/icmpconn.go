package lab

import (
	"context"
	"net"
	"net/netip"
)

// ListenICMP opens a raw ICMP socket bound to src inside namespace ns (the
// IP header is stripped on read), for probers outside this package.
func ListenICMP(ctx context.Context, ns string, src netip.Addr) (*net.IPConn, error) {
	return listenICMP(ctx, ns, src, -1)
}
