package doctor

import (
	"context"
	"fmt"
	"net/netip"
	"sync"
	"time"

	"github.com/ducksnest/netd/netd/routes/nl"
	"github.com/ducksnest/netd/policy/desired"
)

// overlayMTUCheck: the overlay device has the policy's MTU.
type overlayMTUCheck struct{}

func (overlayMTUCheck) Name() string { return "mtu" }

func (overlayMTUCheck) Run(ctx context.Context, in *Input) []Finding {
	dev, want := in.State.Overlay.Interface, in.State.Overlay.MTU
	id := "device:" + dev
	links, err := in.Host.Kernel.Links(ctx)
	if err != nil {
		return []Finding{{ID: id, Result: Fail, Summary: "cannot list the devices", Evidence: []string{err.Error()}}}
	}
	for _, l := range links {
		if l.Name != dev {
			continue
		}
		ev := fmt.Sprintf("%s: mtu %d, %s; policy spec.overlay.mtu %d", dev, l.MTU, upDown(l.Up), want)
		switch {
		case l.MTU != want:
			return []Finding{{ID: id, Result: Fail, Summary: fmt.Sprintf("%s has MTU %d, the policy says %d", dev, l.MTU, want),
				Evidence: []string{ev},
				Why: "netd puts the policy's MTU (and advmss = MTU-40) on every route into the overlay and Felix sizes the pods' veths from it; " +
					"a device MTU above the tunnel's real MTU makes large packets vanish inside WireGuard, one below it makes the kernel refuse them (EMSGSIZE)",
				Fix: fmt.Sprintf("tailscaled's TUN MTU is 1280 (TS_DEBUG_MTU changes it): keep spec.overlay.mtu equal to it, or `ip link set dev %s mtu %d` if something else changed it", dev, want)}}
		case !l.Up:
			return []Finding{{ID: id, Result: Fail, Summary: dev + " is down", Evidence: []string{ev},
				Fix: "systemctl status tailscaled; tailscale status"}}
		}
		return []Finding{pass(id, fmt.Sprintf("%s MTU %d as the policy says", dev, l.MTU), ev)}
	}
	return []Finding{{ID: id, Result: Fail, Summary: "no overlay device " + dev,
		Why: "every route netd installs towards the other nodes goes through it",
		Fix: "systemctl status tailscaled (services.tailscale.interfaceName must equal the policy's spec.overlay.interface)"}}
}

func upDown(up bool) string {
	if up {
		return "up"
	}
	return "DOWN"
}

// pathMTUCheck: a DF packet of the overlay MTU reaches every peer, one byte
// more does not.
type pathMTUCheck struct{}

func (pathMTUCheck) Name() string { return "pmtu" }

// probeTimeout bounds one ICMP probe; a busy peer answers well within it.
const probeTimeout = 2 * time.Second

func (pathMTUCheck) Run(ctx context.Context, in *Input) []Finding {
	peers := nodePeers(in.Node)
	if len(peers) == 0 {
		return []Finding{pass("peers", "no node peers to probe")}
	}
	out := make([]Finding, len(peers))
	var wg sync.WaitGroup
	for i, p := range peers {
		wg.Go(func() { out[i] = probePeerMTU(ctx, in, p.Name, p.Address) })
	}
	wg.Wait()
	return out
}

func probePeerMTU(ctx context.Context, in *Input, name string, dst netip.Addr) Finding {
	mtu, src := in.State.Overlay.MTU, in.Node.OverlayAddr
	id := "peer:" + name
	pr := in.Host.Prober
	at, err := pr.Ping(ctx, src, dst, mtu, probeTimeout)
	if err != nil {
		return Finding{ID: id, Result: Fail, Summary: "cannot probe " + name, Evidence: []string{err.Error()}}
	}
	ev := []string{fmt.Sprintf("%d-byte DF echo %s -> %s (%s): %s", mtu, src, dst, name, at)}
	if lk, err := in.Host.Kernel.RouteGet(ctx, nl.RouteQuery{Dst: dst, Src: src}); err == nil {
		ev = append(ev, fmt.Sprintf("route get %s: dev %s table %d%s", dst, lk.Device, lk.Table, cachedMTU(lk.MTU)))
	}
	if !at.Reply {
		small, err := pr.Ping(ctx, src, dst, 84, probeTimeout)
		if err != nil {
			return Finding{ID: id, Result: Fail, Summary: "cannot probe " + name, Evidence: append(ev, err.Error())}
		}
		ev = append(ev, fmt.Sprintf("84-byte echo: %s", small))
		if !small.Reply {
			return Finding{ID: id, Result: Warn, Summary: fmt.Sprintf("%s does not answer ICMP echo on %s: path MTU unknown", name, dst), Evidence: ev,
				Fix: "check that the peer is up (tailscale ping " + dst.String() + ") and that the tailnet policy and its firewall let ICMP echo from the nodes through"}
		}
		return Finding{ID: id, Result: Fail, Summary: fmt.Sprintf("path MTU to %s is below the overlay MTU %d", name, mtu), Evidence: ev,
			Why: fmt.Sprintf("netd's routes tell TCP an MSS of %d and pods send %d-byte packets; a hop that cannot carry them drops them, and without frag-needed coming back connections stall once they send full-size segments", desired.AdvMSS(mtu), mtu),
			Fix: "find the hop with the lower MTU (the peer's tailscale0 MTU, an underlay MTU below 1280+80 for WireGuard) or lower spec.overlay.mtu to what the path carries"}
	}
	above, err := pr.Ping(ctx, src, dst, mtu+1, probeTimeout)
	if err != nil {
		return Finding{ID: id, Result: Fail, Summary: "cannot probe " + name, Evidence: append(ev, err.Error())}
	}
	ev = append(ev, fmt.Sprintf("%d-byte DF echo: %s", mtu+1, above))
	if above.Reply {
		return Finding{ID: id, Result: Warn, Summary: fmt.Sprintf("the path to %s carries more than the overlay MTU %d", name, mtu), Evidence: ev,
			Why: "the overlay device or a route lets bigger packets out than the policy assumes: check the device MTU; harmless for traffic, but the policy does not describe the path",
			Fix: "make spec.overlay.mtu equal to the tunnel's MTU"}
	}
	return pass(id, fmt.Sprintf("%d bytes reach %s with DF, %d do not (%s)", mtu, name, mtu+1, above), ev...)
}

func cachedMTU(m int) string {
	if m == 0 {
		return ""
	}
	return fmt.Sprintf(", mtu %d", m)
}
