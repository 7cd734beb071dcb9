package calico

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"

	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/policy/desired"
)

// One API server for the package: starting one takes seconds. Tests run
// one after another and reset the Calico objects first.
var (
	srvOnce sync.Once
	srv     *kubetest.Server
	srvErr  error
	srvSkip error
	srvDir  string
)

func TestMain(m *testing.M) {
	if kc := os.Getenv(rssChildEnv); kc != "" {
		os.Exit(rssChild(kc))
	}
	code := m.Run()
	if srv != nil {
		if err := srv.Stop(); err != nil {
			fmt.Fprintln(os.Stderr, "stopping kube-apiserver:", err)
			code = 1
		}
	}
	if srvDir != "" {
		os.RemoveAll(srvDir)
	}
	os.Exit(code)
}

// server returns the shared API server with no Calico objects, Leases or
// Events left by an earlier test.
func server(t testing.TB) *kubetest.Server {
	t.Helper()
	srvOnce.Do(func() {
		bin, err := kubetest.FindBinaries()
		if err != nil {
			srvSkip = err
			return
		}
		srvDir, err = os.MkdirTemp("", "netd-calico-kube")
		if err != nil {
			srvErr = err
			return
		}
		srv, srvErr = kubetest.New(bin, srvDir)
	})
	if srvSkip != nil {
		testutil.Skip(t, "kube-apiserver/etcd unavailable (run scripts/kube-tools.sh): %v", srvSkip)
	}
	if srvErr != nil {
		t.Fatal(srvErr)
	}
	c := clients(t, srv)
	ctx := t.Context()
	for _, r := range []schema.GroupVersionResource{IPPools, IPAMBlocks, BlockAffinities, IPAMConfigs, FelixConfigurations, BGPConfigurations} {
		if err := c.Dynamic.Resource(r).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
			t.Fatalf("resetting %s: %v", r.Resource, err)
		}
	}
	if err := c.Dynamic.Resource(kube.Leases).Namespace(kube.LeaseNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.Dynamic.Resource(kube.Events).Namespace(kube.EventNamespace).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
		t.Fatal(err)
	}
	return srv
}

func clients(t testing.TB, s *kubetest.Server) *kube.Client {
	t.Helper()
	c, err := kube.NewClient(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testLog(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.DiscardHandler)
}

// state is a small compiled policy: one pool.
func state(cidr string, nat bool) *desired.State {
	return &desired.State{
		Name: "test", Digest: "d-" + cidr,
		Calico: desired.Calico{
			IPPools: []desired.IPPool{{
				Name: "pods", CIDR: netip.MustParsePrefix(cidr), BlockSize: 26,
				NodeSelector: "all()", NATOutgoing: nat, Encapsulation: "None",
			}},
			StrictAffinity: true,
			Felix: desired.Felix{
				MTUIfacePattern: "^tailscale0$", VethMTU: 1280,
				IptablesMarkMask: 0xff000000, InterfaceExclude: "tailscale0",
			},
		},
	}
}

func get(t testing.TB, c *kube.Client, r schema.GroupVersionResource, name string) *unstructured.Unstructured {
	t.Helper()
	u, err := c.Dynamic.Resource(r).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatalf("getting %s %s: %v", r.Resource, name, err)
	}
	return u
}

func exists(t testing.TB, c *kube.Client, r schema.GroupVersionResource, name string) bool {
	t.Helper()
	_, err := c.Dynamic.Resource(r).Get(context.Background(), name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return false
	}
	if err != nil {
		t.Fatal(err)
	}
	return true
}

// versions maps every Calico object to its resourceVersion.
func versions(t testing.TB, c *kube.Client) map[string]string {
	t.Helper()
	out := map[string]string{}
	for _, r := range []schema.GroupVersionResource{IPPools, IPAMConfigs, FelixConfigurations, BGPConfigurations} {
		l, err := c.Dynamic.Resource(r).List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, u := range l.Items {
			out[r.Resource+"/"+u.GetName()] = u.GetResourceVersion()
		}
	}
	return out
}

func create(t testing.TB, c *kube.Client, r schema.GroupVersionResource, kind, name string, labels map[string]string, spec map[string]any) *unstructured.Unstructured {
	t.Helper()
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": V1.String(), "kind": kind,
		"metadata": map[string]any{"name": name}, "spec": spec,
	}}
	u.SetLabels(labels)
	out, err := c.Dynamic.Resource(r).Create(context.Background(), u, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("creating %s %s: %v", kind, name, err)
	}
	return out
}

func ops(p Plan) string {
	var s []string
	for _, a := range p.Actions {
		s = append(s, string(a.Op)+" "+a.Kind+"/"+a.Name)
	}
	return strings.Join(s, ", ")
}

var owner = map[string]string{OwnerLabel: OwnerValue}
