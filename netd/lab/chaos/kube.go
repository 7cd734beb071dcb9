package chaos

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/netd/lab"
)

// apiAddr is where the lab's nodes reach the API server: an address on
// the overlay bridge, forwarded to the kube-apiserver on the host's
// loopback (the lab has no way out of its namespaces).
const apiAddr = "100.64.255.254"

// kubeLab is a real etcd + kube-apiserver (with netd's RBAC and the Calico
// CRDs) that every netd of the lab watches for its BlockAffinities under
// its own identity.
type kubeLab struct {
	server *kubetest.Server
	client *kube.Client
	ln     net.Listener
	// extra is the block an affinity-churn fault added (invalid if none).
	extra     netip.Prefix
	extraNode string
}

// startKube starts the API server, forwards apiAddr:6443 on the overlay
// bridge to it, makes a confirmed BlockAffinity of every node's blocks and
// sets every node's netd arguments to watch it (the caller restarts them).
func (r *run) startKube(ctx context.Context) error {
	bin, err := kubetest.FindBinaries()
	if err != nil {
		return fmt.Errorf("kube-apiserver and etcd (scripts/kube-tools.sh): %w", err)
	}
	dir := filepath.Join(r.dir, "kube")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("kube dir: %w", err)
	}
	s, err := kubetest.New(bin, dir)
	if err != nil {
		return err
	}
	k := &kubeLab{server: s}
	r.kube = k
	if k.client, err = kube.NewClient(s.Config); err != nil {
		return fmt.Errorf("kube client: %w", err)
	}
	if _, err := ip(ctx, r.lab.WAN, "addr", "replace", apiAddr+"/10", "dev", "br0"); err != nil {
		return err
	}
	if err := k.forward(r.lab.WAN, strings.TrimPrefix(s.Config.Host, "https://")); err != nil {
		return err
	}
	if r.lab.NetdArgs == nil {
		r.lab.NetdArgs = map[string][]string{}
	}
	for _, n := range r.lab.Nodes {
		for _, b := range n.PodCIDRs {
			if err := k.addAffinity(ctx, n.Name, b); err != nil {
				return err
			}
		}
		kc, err := k.kubeconfig(n.Name)
		if err != nil {
			return err
		}
		r.lab.NetdArgs[n.Name] = append(r.lab.NetdArgs[n.Name], "--kubeconfig", kc)
	}
	return nil
}

// stopKube stops the API server and etcd and the forward.
func (r *run) stopKube() {
	if r.kube == nil {
		return
	}
	if r.kube.ln != nil {
		_ = r.kube.ln.Close()
	}
	if err := r.kube.server.Stop(); err != nil {
		r.log.Warn("stopping the API server", "err", err)
	}
}

func (k *kubeLab) forward(ns, target string) error {
	err := lab.InNS(ns, func() error {
		var err error
		k.ln, err = net.Listen("tcp", apiAddr+":6443")
		return err
	})
	if err != nil {
		return fmt.Errorf("listening on %s:6443 in %s: %w", apiAddr, ns, err)
	}
	go func() {
		for {
			in, err := k.ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer in.Close()
				out, err := net.Dial("tcp", target) // from the host's namespace
				if err != nil {
					return
				}
				defer out.Close()
				go func() { _, _ = io.Copy(out, in); _ = out.(*net.TCPConn).CloseWrite() }()
				_, _ = io.Copy(in, out)
			}()
		}
	}()
	return nil
}

// kubeconfig writes the kubeconfig of node's netd identity pointed at the
// forward.
func (k *kubeLab) kubeconfig(node string) (string, error) {
	path, err := k.server.NetdKubeconfig(node)
	if err != nil {
		return "", err
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("reading kubeconfig: %w", err)
	}
	// The API server's certificate names the control plane "kubetest".
	out := strings.Replace(string(b), "server: "+k.server.Config.Host, "server: https://"+apiAddr+":6443\n    tls-server-name: kubetest", 1)
	kc := path + ".lab"
	if err := os.WriteFile(kc, []byte(out), 0o600); err != nil {
		return "", fmt.Errorf("writing kubeconfig: %w", err)
	}
	return kc, nil
}

func affinityName(node string, block netip.Prefix) string {
	return fmt.Sprintf("%s-%s-%d", node, strings.ReplaceAll(block.Addr().String(), ".", "-"), block.Bits())
}

func (k *kubeLab) addAffinity(ctx context.Context, node string, block netip.Prefix) error {
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": calico.V1.String(), "kind": "BlockAffinity",
		"metadata": map[string]any{"name": affinityName(node, block)},
		"spec":     map[string]any{"node": node, "cidr": block.String(), "state": "confirmed", "deleted": false},
	}}
	_, err := testutil.Wait(30*time.Second, "creating BlockAffinity "+affinityName(node, block), func() (bool, error) {
		_, err := k.client.Dynamic.Resource(calico.BlockAffinities).Create(ctx, u, metav1.CreateOptions{})
		return err == nil, ctx.Err()
	})
	return err
}

func (k *kubeLab) deleteAffinity(ctx context.Context, node string, block netip.Prefix) error {
	err := k.client.Dynamic.Resource(calico.BlockAffinities).Delete(ctx, affinityName(node, block), metav1.DeleteOptions{})
	if err != nil {
		return fmt.Errorf("deleting BlockAffinity %s: %w", affinityName(node, block), err)
	}
	return nil
}

// freeBlock returns the first /26 of the pod range outside every node's
// blocks: the block the affinity-churn fault adds and removes.
func (r *run) freeBlock() (netip.Prefix, error) {
	pods := r.lab.PodCIDR
	if !pods.IsValid() || pods.Bits() > 26 {
		return netip.Prefix{}, errors.New("the lab has no pod range to take a block from")
	}
	a := pods.Masked().Addr()
	for pods.Contains(a) {
		b := netip.PrefixFrom(a, 26)
		free := true
		for _, n := range r.lab.Nodes {
			for _, o := range n.PodCIDRs {
				free = free && !o.Overlaps(b)
			}
		}
		if free {
			return b, nil
		}
		for range 64 {
			a = a.Next()
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /26 in %s", pods)
}

// churnAffinity adds a BlockAffinity of a new block for node, waits until
// every other node routes it, and deletes it (the invariants then want it
// gone everywhere).
func (r *run) churnAffinity(ctx context.Context, node string) error {
	b, err := r.freeBlock()
	if err != nil {
		return err
	}
	k := r.kube
	if err := k.addAffinity(ctx, node, b); err != nil {
		return err
	}
	k.extra, k.extraNode = b, node
	var last error
	if _, err := testutil.Wait(30*time.Second, "the new block installed on every other node", func() (bool, error) {
		last = r.checkAll(ctx)
		return last == nil, ctx.Err()
	}); err != nil {
		return fmt.Errorf("%w: %w", err, last)
	}
	k.extra, k.extraNode = netip.Prefix{}, ""
	return k.deleteAffinity(ctx, node, b)
}
