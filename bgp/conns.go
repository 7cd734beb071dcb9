package bgp

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// TCP states as the kernel numbers them (include/net/tcp_states.h).
const (
	tcpEstablished = 1
	tcpSynSent     = 2
)

// openingConns returns the peers among addrs that have a BGP connection in
// this network namespace's kernel that GoBGP may not show yet: one we
// dial (SYN sent, or connected) to their port, or one they opened to our
// listening port that is established and waiting to be accepted or just
// handed to GoBGP's state machine, which still reports the peer Active
// for a moment (longer on a loaded CPU). reassertRestart must not delete
// such a peer: deleting it closes that connection, and the peer, which
// keeps our routes as stale while we restart, drops them all when a
// session with a restarting speaker fails before it is established.
func openingConns(listenPort uint16, peerPort map[netip.Addr]uint16) (map[netip.Addr]bool, error) {
	var socks []*netlink.Socket
	for _, family := range []uint8{unix.AF_INET, unix.AF_INET6} {
		ss, err := netlink.SocketDiagTCP(family)
		if err != nil && !errors.Is(err, netlink.ErrDumpInterrupted) {
			return nil, fmt.Errorf("listing tcp sockets (family %d): %w", family, err)
		}
		socks = append(socks, ss...)
	}
	out := map[netip.Addr]bool{}
	for _, s := range socks {
		if s.State != tcpEstablished && s.State != tcpSynSent {
			continue
		}
		remote, ok := netip.AddrFromSlice(s.ID.Destination)
		if !ok {
			continue
		}
		remote = remote.Unmap()
		port, known := peerPort[remote]
		if !known {
			continue
		}
		if s.ID.SourcePort == listenPort || s.ID.DestinationPort == port {
			out[remote] = true
		}
	}
	return out, nil
}
