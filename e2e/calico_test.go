package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/lab"
)

// apiAddr is where the lab's nodes reach the API server: an address on the
// overlay bridge, forwarded to the test's kube-apiserver on the host's
// loopback (the lab itself has no way out of its namespaces).
const apiAddr = "100.64.255.254"

// TestCalicoIPAM runs netd on every lab node with --kubeconfig against a
// real kube-apiserver: each node's pod blocks are its confirmed Calico
// BlockAffinities, a new affinity is advertised and installed on every
// other node, a deleted one withdrawn; the Lease holder alone writes the
// Calico objects of the policy.
func TestCalicoIPAM(t *testing.T) {
	t.Parallel() // see doc.go
	needRoot(t)
	s := kubetest.Start(t)
	c, err := kube.NewClient(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	l := upLab(t, "control-plane", "firebat", "old", "ultra") // topology only
	kc := apiThroughLab(t, l, s)

	// The blocks of the policy become affinities first, so that the lab
	// converges as with the static source.
	ctx := t.Context()
	for _, n := range l.Nodes {
		for _, b := range n.PodCIDRs {
			addAffinity(ctx, t, c, n.Name, b)
		}
	}
	l.NetdArgs = map[string][]string{}
	for _, n := range l.Nodes {
		l.NetdArgs[n.Name] = []string{"--kubeconfig", kc(n.Name)}
		if err := l.StartNetd(ctx, n.Name); err != nil {
			t.Fatal(err)
		}
	}
	cctx, cancel := context.WithTimeout(ctx, 90*time.Second)
	defer cancel()
	if err := l.WaitConverged(cctx, names(l)); err != nil {
		t.Fatal(err)
	}

	// An affinity added for firebat is advertised and installed everywhere;
	// deleted, it is withdrawn everywhere.
	others := others(l, "firebat")
	var adds, dels []time.Duration
	for i := range 5 {
		block := netip.MustParsePrefix(fmt.Sprintf("10.244.5.%d/26", i*64%256))
		start := time.Now()
		name := addAffinity(ctx, t, c, "firebat", block)
		testutil.Poll(t, 20*time.Second, "new affinity installed on every other node", func() (bool, error) {
			return routeOnAll(l, others, block, true)
		})
		adds = append(adds, time.Since(start))
		start = time.Now()
		if err := c.Dynamic.Resource(calico.BlockAffinities).Delete(ctx, name, metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
		testutil.Poll(t, 20*time.Second, "deleted affinity withdrawn everywhere", func() (bool, error) {
			return routeOnAll(l, others, block, false)
		})
		dels = append(dels, time.Since(start))
	}
	t.Logf("MEASURE BlockAffinity created -> block installed on all 3 other nodes: median %v (%v); deleted -> withdrawn: median %v (%v)",
		median(adds), adds, median(dels), dels)

	// Exactly one netd holds the Lease and has written the policy's pools.
	testutil.Poll(t, 30*time.Second, "the leader applied the policy's IPPool", func() (bool, error) {
		u, err := c.Dynamic.Resource(calico.IPPools).Get(ctx, "default-ipv4", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return u.GetLabels()["netd.ducksnest.dev/managed-by"] == "netd", nil
	})
	leaders, held := 0, 0.0
	for _, n := range l.Nodes {
		st, err := l.Status(ctx, n.Name)
		if err != nil {
			t.Fatal(err)
		}
		// The metrics the Lease and Calico drift alerts read
		// (deploy/monitoring): the holder says so, and the objects it
		// wrote are all applied.
		held += metric(t, l, n.Name, "netd_lease_held", `lease="netd-calico"`)
		if strings.Contains(string(st.Raw), `"leader": true`) {
			leaders++
			body, err := httpGet(n.NS, lab.DefaultMetricsAddr, "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(body, "\nnetd_calico_drift_objects{state=\"unapplied\"} 0\n") {
				t.Errorf("the leader %s does not report 0 unapplied Calico objects:\n%s", n.Name, grepLines(body, "netd_calico_drift_objects"))
			}
		}
		if !strings.Contains(string(st.Raw), `"served": "`+calico.ServedV1+`"`) {
			t.Errorf("%s does not report the Calico API it uses", n.Name)
		}
		if !strings.Contains(string(st.Raw), `"podSource": "calico-ipam"`) {
			t.Errorf("%s does not take its blocks from Calico IPAM", n.Name)
		}
	}
	if leaders != 1 {
		t.Errorf("%d netd instances say they hold the Lease, want 1", leaders)
	}
	if held != 1 {
		t.Errorf("netd_lease_held{lease=\"netd-calico\"} summed over the nodes = %v, want 1", held)
	}
	for _, n := range l.Nodes {
		if rss, err := l.RSS(n.Name); err == nil {
			t.Logf("MEASURE netd RSS on %s with the Kubernetes watches: %.1f MiB", n.Name, float64(rss)/(1<<20))
		}
	}
}

// apiThroughLab forwards apiAddr:6443 on the lab's overlay bridge to the
// test API server and returns, for a node, the kubeconfig of its netd
// identity (mkpki.sh), through the forward.
func apiThroughLab(t *testing.T, l *lab.Lab, s *kubetest.Server) func(node string) string {
	t.Helper()
	if out, err := exec.CommandContext(t.Context(), "ip", "-n", l.WAN, "addr", "add", apiAddr+"/10", "dev", "br0").CombinedOutput(); err != nil {
		t.Fatalf("addressing the overlay bridge: %v: %s", err, out)
	}
	return apiForwarder(t, l.WAN, apiAddr, s)
}

// apiForwarder forwards addr:6443 in namespace ns to the test's
// kube-apiserver and returns, per node, a kubeconfig of that node's netd
// identity pointed at it.
func apiForwarder(t *testing.T, ns, addr string, s *kubetest.Server) func(node string) string {
	t.Helper()
	var ln net.Listener
	if err := lab.InNS(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr+":6443")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	target := strings.TrimPrefix(s.Config.Host, "https://")
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", target) // from the test's own namespace
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in); _ = out.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	return func(node string) string {
		path, err := s.NetdKubeconfig(node)
		if err != nil {
			t.Fatal(err)
		}
		b, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		// The API server's certificate (mkpki.sh) names the control plane
		// "kubetest", not the lab's forwarding address.
		kc := filepath.Join(t.TempDir(), node+".kubeconfig")
		out := strings.Replace(string(b), "server: "+s.Config.Host, "server: https://"+addr+":6443\n    tls-server-name: kubetest", 1)
		if err := os.WriteFile(kc, []byte(out), 0o600); err != nil {
			t.Fatal(err)
		}
		return kc
	}
}

func addAffinity(ctx context.Context, t *testing.T, c *kube.Client, node string, block netip.Prefix) string {
	t.Helper()
	name := fmt.Sprintf("%s-%s-%d", node, strings.ReplaceAll(block.Addr().String(), ".", "-"), block.Bits())
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": calico.V1.String(), "kind": "BlockAffinity",
		"metadata": map[string]any{"name": name},
		"spec":     map[string]any{"node": node, "cidr": block.String(), "state": "confirmed", "deleted": false},
	}}
	if _, err := c.Dynamic.Resource(calico.BlockAffinities).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		t.Fatalf("creating BlockAffinity %s: %v", name, err)
	}
	return name
}

// routeOnAll reports whether every node in nodes has (want) or lacks
// (!want) a netd route for block.
func routeOnAll(l *lab.Lab, nodes []string, block netip.Prefix, want bool) (bool, error) {
	for _, n := range nodes {
		rs, err := l.Routes(n)
		if err != nil {
			return false, err
		}
		has := slices.ContainsFunc(rs, func(r netlink.Route) bool { return r.Dst != nil && r.Dst.String() == block.String() })
		if has != want {
			return false, nil
		}
	}
	return true, nil
}

// grepLines returns the lines of s that contain sub.
func grepLines(s, sub string) string {
	var out []string
	for _, line := range strings.Split(s, "\n") {
		if strings.Contains(line, sub) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}
