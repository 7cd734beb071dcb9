package calico

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ducksnest/netd/internal/testutil"

	"github.com/prometheus/client_golang/prometheus"
	yamlv3 "go.yaml.in/yaml/v3"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/yaml"

	"github.com/ducksnest/netd/internal/kubetest"
	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/policy"
)

func examplePolicy(t *testing.T, gv schema.GroupVersion) []byte {
	t.Helper()
	const name = "examples/ducksnest/policy.yaml"
	data, err := os.ReadFile(filepath.Join("..", "..", name))
	if err != nil {
		t.Fatal(err)
	}
	f, err := policy.Load(name, data)
	if err != nil {
		t.Fatal(err)
	}
	st, err := policy.Compile(f)
	if err != nil {
		t.Fatal(err)
	}
	out, err := Render(st, gv)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestCalicoAPIs runs netd, authenticated as a node's identity and
// authorised only by deploy/rbac, against a cluster with Calico's native
// projectcalico.org/v3 CRDs and one with the crd.projectcalico.org/v1 CRDs
// only: discovery finds which; `netd policy render --calico` output is
// accepted object by object with strict field validation (what kubectl
// apply does); block affinities are read; and the safe pool migration
// (new pool, old one disabled, deleted only once its last IPAMBlock is
// gone) runs on both.
func TestCalicoAPIs(t *testing.T) {
	for _, tc := range []struct {
		name string
		crds kubetest.CRDs
		want API
	}{{"v3", kubetest.CalicoV3, APIV3}, {"v1", kubetest.CalicoV1, APIV1}} {
		t.Run(tc.name, func(t *testing.T) {
			s := kubetest.StartWith(t, tc.crds)
			ctx := t.Context()
			admin, err := kube.NewClient(s.Config)
			if err != nil {
				t.Fatal(err)
			}
			netd := s.NetdClient(t, "node-a")
			api, err := Discover(ctx, netd)
			if err != nil {
				t.Fatal(err)
			}
			if api != tc.want {
				t.Fatalf("discovered %+v, want %+v", api, tc.want)
			}

			// The rendered manifests, applied as kubectl would.
			dec := yamlv3.NewDecoder(bytes.NewReader(examplePolicy(t, api.GroupVersion)))
			n := 0
			for {
				var doc map[string]any
				if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					t.Fatal(err)
				}
				b, _ := yaml.Marshal(doc)
				var obj map[string]any
				if err := yaml.Unmarshal(b, &obj); err != nil {
					t.Fatal(err)
				}
				u := &unstructured.Unstructured{Object: obj}
				gvr, ok := api.resourceOf(u.GetKind())
				if !ok || u.GetAPIVersion() != api.GroupVersion.String() {
					t.Fatalf("rendered %s %s of %s", u.GetAPIVersion(), u.GetKind(), api.GroupVersion)
				}
				if _, err := admin.Dynamic.Resource(gvr).Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
					t.Errorf("applying rendered %s %s: %v", u.GetKind(), u.GetName(), err)
				}
				n++
			}
			if n != 4 {
				t.Errorf("%d objects rendered, want 4", n)
			}
			for _, r := range []schema.GroupVersionResource{api.IPPools, api.IPAMConfigs, api.FelixConfigurations, api.BGPConfigurations} {
				if err := admin.Dynamic.Resource(r).DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{}); err != nil {
					t.Fatal(err)
				}
			}

			// Block affinities, read as the node.
			mk := func(r schema.GroupVersionResource, kind, name string, spec map[string]any) {
				u := &unstructured.Unstructured{Object: map[string]any{
					"apiVersion": r.GroupVersion().String(), "kind": kind,
					"metadata": map[string]any{"name": name}, "spec": spec,
				}}
				if _, err := admin.Dynamic.Resource(r).Create(ctx, u, metav1.CreateOptions{FieldValidation: "Strict"}); err != nil {
					t.Fatalf("creating %s %s: %v", kind, name, err)
				}
			}
			mk(api.BlockAffinities, "BlockAffinity", "node-a-10-244-0-0-26", map[string]any{"node": "node-a", "cidr": "10.244.0.0/26", "state": "confirmed"})
			src, err := NewAffinitySource(netd.Dynamic, api.BlockAffinities, "node-a", testLog(t), prometheus.NewRegistry())
			if err != nil {
				t.Fatal(err)
			}
			sctx, stop := context.WithCancel(ctx)
			done := make(chan error, 1)
			go func() { done <- src.Run(sctx) }()
			defer func() { stop(); <-done }()
			if err := src.WaitSynced(ctx); err != nil {
				t.Fatal(err)
			}
			if got := src.Blocks("node-a"); len(got) != 1 || got[0].String() != "10.244.0.0/26" {
				t.Errorf("blocks %v", got)
			}

			// The safe migration, written as the node.
			r := NewReconciler(netd, api, testLog(t), "node-a")
			if _, err := r.Reconcile(ctx, state("10.244.0.0/16", false)); err != nil {
				t.Fatal(err)
			}
			mk(api.IPAMBlocks, "IPAMBlock", "10-244-0-0-26", map[string]any{
				"cidr": "10.244.0.0/26", "affinity": "host:node-a", "strictAffinity": false,
				"allocations": []any{int64(0), nil}, "unallocated": []any{int64(1)},
				"attributes": []any{map[string]any{"handle_id": "k8s-pod-network.x"}},
			})
			next := state("10.245.0.0/16", false)
			st, err := r.Reconcile(ctx, next)
			if err != nil {
				t.Fatal(err)
			}
			if got := actions(st.Applied); got != "create IPPool/pods-10-245-0-0-16-26, disable IPPool/pods" {
				t.Fatalf("applied %q", got)
			}
			st, err = r.Reconcile(ctx, next)
			if err != nil || len(st.Applied) != 0 || len(poolsOnly(st.Pending)) != 1 {
				t.Fatalf("with a block left: status %+v, err %v", st, err)
			}
			if _, err := admin.Dynamic.Resource(api.IPPools).Get(ctx, "pods", metav1.GetOptions{}); err != nil {
				t.Fatalf("pool with an IPAMBlock: %v", err)
			}
			if err := admin.Dynamic.Resource(api.IPAMBlocks).Delete(ctx, "10-244-0-0-26", metav1.DeleteOptions{}); err != nil {
				t.Fatal(err)
			}
			st, err = r.Reconcile(ctx, next)
			if err != nil || actions(st.Applied) != "delete IPPool/pods" {
				t.Fatalf("drained: status %+v, err %v", st, err)
			}
		})
	}
}

func actions(as []Action) string {
	var s []string
	for _, a := range as {
		s = append(s, string(a.Op)+" "+a.Kind+"/"+a.Name)
	}
	return strings.Join(s, ", ")
}

// TestRBACLeastPrivilege: netd's identity may do what netd does and
// nothing else RBAC can refuse: no Secrets, no Pods, no Calico
// configuration other than "default", no other Lease, no Events outside
// "default".
func TestRBACLeastPrivilege(t *testing.T) {
	s := server(t)
	admin := clients(t, s)
	netd := s.NetdClient(t, "node-a")
	ctx := t.Context()
	create(t, admin, FelixConfigurations, "FelixConfiguration", "node.node-b", nil, map[string]any{})
	felix := get(t, admin, FelixConfigurations, "node.node-b")
	lease := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
		"metadata": map[string]any{"name": "kube-scheduler", "namespace": "kube-system"}, "spec": map[string]any{},
	}}
	if _, err := admin.Dynamic.Resource(kube.Leases).Namespace("kube-system").Create(ctx, lease, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	lease, _ = admin.Dynamic.Resource(kube.Leases).Namespace("kube-system").Get(ctx, "kube-scheduler", metav1.GetOptions{})
	ev := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Event", "metadata": map[string]any{"generateName": "x.", "namespace": "kube-system"},
		"involvedObject": map[string]any{"kind": "Pod", "name": "x"}, "reason": "X",
	}}
	core := func(r string) schema.GroupVersionResource {
		return schema.GroupVersionResource{Version: "v1", Resource: r}
	}
	refused := map[string]error{}
	_, refused["list secrets"] = netd.Dynamic.Resource(core("secrets")).Namespace("kube-system").List(ctx, metav1.ListOptions{})
	_, refused["list pods"] = netd.Dynamic.Resource(core("pods")).List(ctx, metav1.ListOptions{})
	_, refused["update FelixConfiguration node.node-b"] = netd.Dynamic.Resource(FelixConfigurations).Update(ctx, felix, metav1.UpdateOptions{})
	refused["delete FelixConfiguration node.node-b"] = netd.Dynamic.Resource(FelixConfigurations).Delete(ctx, "node.node-b", metav1.DeleteOptions{})
	_, refused["update Lease kube-scheduler"] = netd.Dynamic.Resource(kube.Leases).Namespace("kube-system").Update(ctx, lease, metav1.UpdateOptions{})
	_, refused["create Event in kube-system"] = netd.Dynamic.Resource(kube.Events).Namespace("kube-system").Create(ctx, ev, metav1.CreateOptions{})
	_, refused["list IPAMHandles"] = netd.Dynamic.Resource(V1.WithResource("ipamhandles")).List(ctx, metav1.ListOptions{})
	for what, err := range refused {
		if err == nil || !strings.Contains(err.Error(), "forbidden") {
			t.Errorf("%s as netd: %v, want forbidden", what, err)
		}
	}
	// and what netd does is allowed
	if _, err := netd.Dynamic.Resource(BlockAffinities).List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("list blockaffinities as netd: %v", err)
	}
	if err := kube.NewRecorder(netd, "netd", "node-a").Event(ctx, kube.Ref{APIVersion: V1.String(), Kind: "IPPool", Name: "x"}, kube.Normal, "Test", "test"); err != nil {
		t.Errorf("event as netd: %v", err)
	}
}

// logBuffer is a slog handler's output, safe to read while written.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestMissingRule: with the BlockAffinity rule taken out of netd's
// ClusterRole, the source does not stall silently: its error (what `netd
// status` shows as affinityError) and its log name the refused verb and
// resource and the RBAC rule to add.
func TestMissingRule(t *testing.T) {
	s := kubetest.Start(t)
	admin, err := kube.NewClient(s.Config)
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	roles := schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1", Resource: "clusterroles"}
	cr, err := admin.Dynamic.Resource(roles).Get(ctx, "ducksnest:netd", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	rules, _, _ := unstructured.NestedSlice(cr.Object, "rules")
	var kept []any
	for _, r := range rules {
		if res, _, _ := unstructured.NestedStringSlice(r.(map[string]any), "resources"); len(res) == 1 && res[0] == "blockaffinities" {
			continue
		}
		kept = append(kept, r)
	}
	cr.Object["rules"] = kept
	if _, err := admin.Dynamic.Resource(roles).Update(ctx, cr, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	var logs logBuffer
	src, err := NewAffinitySource(s.NetdClient(t, "node-a").Dynamic, BlockAffinities, "node-a",
		slog.New(slog.NewTextHandler(&logs, nil)), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	sctx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- src.Run(sctx) }()
	defer func() { stop(); <-done }()
	testutil.Eventually(t, 30e9, "the refusal to surface", func() bool { return src.Err() != nil })
	want := "forbidden: list blockaffinities.crd.projectcalico.org: missing RBAC rule {apiGroups: [crd.projectcalico.org], resources: [blockaffinities], verbs: [list]} at cluster scope (ClusterRole)"
	if err := src.Err(); !strings.Contains(err.Error(), want) || !kube.IsForbidden(err) {
		t.Errorf("error %q, want it to contain %q", err, want)
	}
	testutil.Eventually(t, 30e9, "the refusal in the log", func() bool { return strings.Contains(logs.String(), "level=ERROR") })
	if !strings.Contains(logs.String(), want) {
		t.Errorf("log %q lacks %q", logs.String(), want)
	}
	if src.Synced() {
		t.Error("synced without a list")
	}
}
