package probe

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"time"
)

// Echo asks, once, whether a peer's addresses answer ICMP echo: netd's
// question to the path before it acts on a failure detector. A BFD session
// that goes down says that the peer's netd stopped answering, not that the
// path did; netd is not in the forwarding path, so while the peer's kernel
// answers on the path the routes use, a frozen or starved netd there costs
// no packet, and withdrawing its routes would.
type Echo struct {
	// Listen opens the ICMP socket (default: a raw socket on every local
	// address that takes only echo replies); tests pass an in-memory one.
	Listen func() (PacketConn, error)
}

// Answered sends an echo request to every addr, again every gap, until
// one answers or wait has passed (or ctx is done). It returns the first
// address that answered, or the zero Addr if none did. An error means the
// question could not be asked (no socket): the caller must not take that
// for an answer.
func (e Echo) Answered(ctx context.Context, addrs []netip.Addr, wait, gap time.Duration) (netip.Addr, error) {
	if len(addrs) == 0 {
		return netip.Addr{}, nil
	}
	listen := e.Listen
	if listen == nil {
		listen = func() (PacketConn, error) { return listenEchoReplies(netip.IPv4Unspecified()) }
	}
	conn, err := listen()
	if err != nil {
		return netip.Addr{}, fmt.Errorf("opening icmp socket: %w", err)
	}
	deadline := time.Now().Add(wait)
	ctx, cancel := context.WithDeadline(ctx, deadline)
	defer cancel()
	stop := context.AfterFunc(ctx, func() { _ = conn.Close() })
	defer func() {
		if stop() {
			_ = conn.Close()
		}
	}()

	id := uint16(rand.IntN(0xffff) + 1)
	answered := make(chan netip.Addr, 1)
	go firstAnswer(conn, id, addrs, answered)
	tick := time.NewTicker(gap)
	defer tick.Stop()
	for seq := uint16(1); ; seq++ {
		for _, a := range addrs {
			b, err := EchoRequest(id, seq, []byte("netd-path-check"))
			if err != nil {
				return netip.Addr{}, err
			}
			// A failed send (no route: a link down) is no answer; the
			// other addresses may still answer.
			_, _ = conn.WriteTo(b, &net.IPAddr{IP: a.AsSlice()})
		}
		select {
		case a := <-answered:
			return a, nil
		case <-ctx.Done():
			return answeredBy(answered), nil
		case <-tick.C:
			if !time.Now().Before(deadline) {
				return answeredBy(answered), nil
			}
		}
	}
}

// answeredBy returns the address on answered, if the reader sent one
// before the time was up.
func answeredBy(answered <-chan netip.Addr) netip.Addr {
	select {
	case a := <-answered:
		return a
	default:
		return netip.Addr{}
	}
}

// firstAnswer reads conn until it is closed and sends the first address
// of addrs that answers an echo request with id.
func firstAnswer(conn PacketConn, id uint16, addrs []netip.Addr, answered chan<- netip.Addr) {
	ReadEchoReplies(conn, id, func(from netip.Addr, _ uint16, _ []byte) bool {
		if !slices.Contains(addrs, from) {
			return false
		}
		select {
		case answered <- from:
		default:
		}
		return true
	})
}
