package calico

import (
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ducksnest/netd/bgp"
	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/desired"
)

// TestAffinityToBGP wires the source into two real speakers the way the
// daemon does: node a advertises Blocks("a"), node b imports from a only
// what Owners() says is a's. A BlockAffinity for a is advertised and
// learned by b; one for b claimed by a is refused by b's import filter;
// deleting a's affinity withdraws the block. Measures create → learned.
func TestAffinityToBGP(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	src, _ := startSource(t, c, "a")
	addrs := bgptest.Addrs(t, 2)
	const asn = 64512
	cfg := func(self netip.Addr, peer string, peerAddr netip.Addr) desired.Speaker {
		return desired.Speaker{
			ASN: asn, RouterID: self, ListenAddr: self, ListenPort: bgptest.Port,
			Timers:  desired.Timers{HoldTime: 3 * time.Second, Keepalive: time.Second, ConnectRetry: time.Second},
			PodCIDR: netip.MustParsePrefix("10.244.0.0/16"),
			Peers: []desired.Peer{{Name: peer, Kind: desired.PeerNode, Address: peerAddr, ASN: asn,
				ExportOwnBlocks: true, Import: desired.Import{MaxPrefixes: 10}}},
		}
	}
	speakers := map[string]*bgp.Speaker{}
	cfgs := map[string]desired.Speaker{"a": cfg(addrs[0], "b", addrs[1]), "b": cfg(addrs[1], "a", addrs[0])}
	for _, n := range []string{"a", "b"} {
		sp := bgp.New(testLog(t), prometheus.NewRegistry())
		speakers[n] = sp
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := sp.Stop(ctx, false); err != nil {
				t.Errorf("stop %s: %v", n, err)
			}
		})
	}
	// a's speaker also claims b's block, as a misbehaving node would.
	rogue := netip.MustParsePrefix("10.244.9.0/26")
	reconcile := func() {
		owners := src.Owners()
		for n, sp := range speakers {
			own := owners[n]
			if n == "a" {
				own = append(slices.Clone(own), rogue)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := sp.Reconcile(ctx, WithIPAMOwners(cfgs[n], owners), own)
			cancel()
			if err != nil {
				t.Errorf("reconcile %s: %v", n, err)
			}
		}
	}
	ctx, cancel := context.WithCancel(t.Context())
	loopDone := make(chan struct{})
	go func() { // the daemon's forwarder: source changes poke BGP
		defer close(loopDone)
		for {
			reconcile()
			select {
			case <-ctx.Done():
				return
			case <-src.Changes():
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-loopDone })
	learned := func(p netip.Prefix) bool {
		return slices.ContainsFunc(speakers["b"].Learned(), func(l bgp.Learned) bool { return l.Prefix == p })
	}
	addAffinity(t, c, "b", rogue.String(), "confirmed")
	var lat []time.Duration
	for i := range 5 {
		p := netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 244, byte(i), 0}), 26)
		start := time.Now()
		addAffinity(t, c, "a", p.String(), "confirmed")
		testutil.Eventually(t, 20*time.Second, "b to learn "+p.String(), func() bool { return learned(p) })
		lat = append(lat, time.Since(start))
	}
	slices.Sort(lat)
	t.Logf("BlockAffinity create → learned by the peer over BGP: median %v (min %v, max %v)",
		lat[len(lat)/2], lat[0], lat[len(lat)-1])
	if learned(rogue) {
		t.Error("b accepted a block affine to b from a")
	}
	withdrawn := netip.MustParsePrefix("10.244.0.0/26")
	if err := c.Dynamic.Resource(BlockAffinities).Delete(t.Context(), affinityName("a", withdrawn.String()), metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 20*time.Second, "b to drop the released block", func() bool { return !learned(withdrawn) })
}
