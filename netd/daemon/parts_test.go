package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/ducksnest/netd/examples"
	"github.com/ducksnest/netd/netd/reconcile"
)

// offlineKubeconfig is a kubeconfig for an API server that is never
// contacted: the parts are built, not run.
func offlineKubeconfig(t *testing.T) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "kubeconfig")
	const kc = `apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: u, user: {token: t}}]
contexts: [{name: c, context: {cluster: c, user: u}}]
current-context: c
`
	if err := os.WriteFile(p, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestOptionalParts: each optional part is built only when configured,
// runs as one of the daemon's parts, and replaces only the defaults of what
// it adds; a reload pokes the loop of every part that follows the policy,
// and a BGP run the parts that follow the own blocks.
func TestOptionalParts(t *testing.T) {
	kubeconfig := offlineKubeconfig(t)
	bfdOn := func(c *Config) { c.BFD.Enabled = true }
	withCluster := func(c *Config) { c.Kubeconfig = kubeconfig }
	withTailscale := func(c *Config) { c.TailscaleSocket = filepath.Join(t.TempDir(), "tailscaled.sock") }
	discover := func(c *Config) { c.DiscoverPeers = true }
	tests := []struct {
		name                         string
		opts                         []func(*Config)
		parts                        string // their types
		blocks, peers, overlay, bfdW string
		reports                      int
	}{
		{name: "policy only", parts: "",
			blocks: "daemon.policyBlocks", peers: "daemon.policyPeers", overlay: "daemon.noOverlayCheck", bfdW: "daemon.noPeerWatcher"},
		{name: "bfd", opts: []func(*Config){bfdOn}, parts: "*bfd.Server *daemon.pathGuard", reports: 1,
			blocks: "daemon.policyBlocks", peers: "daemon.policyPeers", overlay: "daemon.noOverlayCheck", bfdW: "*bfd.Server"},
		{name: "cluster", opts: []func(*Config){withCluster}, parts: "*daemon.cluster", reports: 1,
			blocks: "*daemon.cluster", peers: "daemon.policyPeers", overlay: "daemon.noOverlayCheck", bfdW: "daemon.noPeerWatcher"},
		{name: "tailscale", opts: []func(*Config){withTailscale}, parts: "*daemon.tailscalePart", reports: 1,
			blocks: "daemon.policyBlocks", peers: "daemon.policyPeers", overlay: "*daemon.tailscalePart", bfdW: "daemon.noPeerWatcher"},
		{name: "tailscale with discovery", opts: []func(*Config){withTailscale, discover}, parts: "*daemon.tailscalePart", reports: 1,
			blocks: "daemon.policyBlocks", peers: "*daemon.tailscalePart", overlay: "*daemon.tailscalePart", bfdW: "daemon.noPeerWatcher"},
		{name: "all", opts: []func(*Config){bfdOn, withCluster, withTailscale, discover},
			parts: "*bfd.Server *daemon.pathGuard *daemon.cluster *daemon.tailscalePart", reports: 3,
			blocks: "*daemon.cluster", peers: "*daemon.tailscalePart", overlay: "*daemon.tailscalePart", bfdW: "*bfd.Server"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, path := newTestDaemon(t, tt.opts...)
			var parts []string
			for _, p := range d.parts {
				parts = append(parts, fmt.Sprintf("%T", p))
			}
			got := []string{strings.Join(parts, " "), fmt.Sprintf("%T", d.blocks), fmt.Sprintf("%T", d.peers),
				fmt.Sprintf("%T", d.overlay), fmt.Sprintf("%T", d.bfd)}
			want := []string{tt.parts, tt.blocks, tt.peers, tt.overlay, tt.bfdW}
			if !slices.Equal(got, want) {
				t.Errorf("parts, blocks, peers, overlay, bfd = %q, want %q", got, want)
			}
			if len(d.reports) != tt.reports {
				t.Errorf("%d status reports, want %d", len(d.reports), tt.reports)
			}

			// The Tailscale part advertises the blocks the cluster gives.
			var ts *tailscalePart
			var c *cluster
			for _, p := range d.parts {
				switch p := p.(type) {
				case *tailscalePart:
					ts = p
				case *cluster:
					c = p
				}
			}
			if ts != nil && c != nil && ts.blocks != blockSource(c) {
				t.Errorf("the tailscale part's block source is %T, want the cluster", ts.blocks)
			}

			// Which loops each event pokes.
			wantReload := []*reconcile.Trigger{d.bgpTrig, d.routeTrig}
			wantAfterBGP := []*reconcile.Trigger{d.routeTrig}
			if c != nil {
				wantReload = append(wantReload, c.trig)
			}
			if ts != nil {
				wantReload = append(wantReload, ts.trig)
				wantAfterBGP = append(wantAfterBGP, ts.trig)
			}
			if !slices.Equal(d.onReload, wantReload) || !slices.Equal(d.afterBGP, wantAfterBGP) {
				t.Errorf("onReload %v, afterBGP %v; want %v, %v", d.onReload, d.afterBGP, wantReload, wantAfterBGP)
			}
			for _, tr := range wantReload {
				drain(tr)
			}
			changed := strings.Replace(string(examples.Ducksnest), "holdTime: 9s", "holdTime: 6s", 1)
			if err := os.WriteFile(path, []byte(changed), 0o600); err != nil {
				t.Fatal(err)
			}
			d.reloadPolicy()
			for i, tr := range wantReload {
				if !drain(tr) {
					t.Errorf("reload did not poke trigger %d of %d", i, len(wantReload))
				}
			}
		})
	}
}

// drain reports whether tr was poked, and clears it.
func drain(tr *reconcile.Trigger) bool {
	select {
	case <-tr.C():
		return true
	default:
		return false
	}
}
