package calico

import (
	"errors"
	"maps"
	"slices"
	"strings"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ducksnest/netd/netd/kube"
)

// TestApplyFromEmpty: the first run creates every object, owned and
// written by the netd field manager; a second run writes nothing (every
// resourceVersion stays put) and plans nothing.
func TestApplyFromEmpty(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	r := NewReconciler(s.NetdClient(t, "node-a"), APIV1, testLog(t), "node-a")
	ctx := t.Context()
	st, err := r.Reconcile(ctx, state("10.244.0.0/16", false))
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Applied) != 4 || st.Error != "" {
		t.Fatalf("applied %d actions, want 4 creates: %+v", len(st.Applied), st)
	}
	if st.Unapplied != 0 {
		t.Errorf("unapplied %d after every write succeeded, want 0", st.Unapplied)
	}
	pool := get(t, c, IPPools, "pods")
	if !owned(pool) || specString(pool, "cidr") != "10.244.0.0/16" || spec(pool)["blockSize"] != int64(26) || specBool(pool, "natOutgoing") {
		t.Errorf("pool: %v", pool.Object)
	}
	if mf := pool.GetManagedFields(); len(mf) == 0 || mf[0].Manager != FieldManager {
		t.Errorf("managed fields: %+v", mf)
	}
	if ipam := get(t, c, IPAMConfigs, "default"); !specBool(ipam, "strictAffinity") || !owned(ipam) {
		t.Errorf("ipamconfig: %v", ipam.Object)
	}
	felix := get(t, c, FelixConfigurations, "default")
	if specString(felix, "mtuIfacePattern") != "^tailscale0$" || felix.GetAnnotations()[PodMTUAnnotation] != "1280" {
		t.Errorf("felix: %v", felix.Object)
	}
	// 0xff000000 does not fit the CRD's int32: not written, reported.
	if _, ok := spec(felix)["iptablesMarkMask"]; ok || len(st.Pending) != 1 || st.Pending[0].Kind != "FelixConfiguration" {
		t.Errorf("iptablesMarkMask %v, pending %v", spec(felix)["iptablesMarkMask"], st.Pending)
	}
	before := versions(t, c)
	st, err = r.Reconcile(ctx, state("10.244.0.0/16", false))
	if err != nil || len(st.Applied) != 0 {
		t.Fatalf("second run applied %v, err %v", st.Applied, err)
	}
	if after := versions(t, c); !maps.Equal(before, after) {
		t.Errorf("second run wrote: %v → %v", before, after)
	}
	p, err := r.Plan(ctx, state("10.244.0.0/16", false))
	if err != nil || len(p.Actions) != 0 {
		t.Errorf("plan after apply: %s (err %v)", p, err)
	}
	if got := r.Status(); got.Digest != "d-10.244.0.0/16" || got.Error != "" {
		t.Errorf("status %+v", got)
	}
}

// TestUpdateNATOutgoing: a mutable field change is one in-place update.
func TestUpdateNATOutgoing(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	r := NewReconciler(s.NetdClient(t, "node-a"), APIV1, testLog(t), "node-a")
	ctx := t.Context()
	if _, err := r.Reconcile(ctx, state("10.244.0.0/16", false)); err != nil {
		t.Fatal(err)
	}
	p, err := r.Plan(ctx, state("10.244.0.0/16", true))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Actions) != 1 || p.Actions[0].Op != OpUpdate || !slices.Equal(p.Actions[0].Changes, []string{"spec.natOutgoing: false → true"}) {
		t.Fatalf("plan: %s", p)
	}
	if _, err := r.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	if !specBool(get(t, c, IPPools, "pods"), "natOutgoing") {
		t.Error("natOutgoing not updated")
	}
	// A drifted owned pool is put back.
	pool := get(t, c, IPPools, "pods")
	spec(pool)["natOutgoing"] = false
	if _, err := c.Dynamic.Resource(IPPools).Update(ctx, pool, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, state("10.244.0.0/16", true)); err != nil {
		t.Fatal(err)
	}
	if !specBool(get(t, c, IPPools, "pods"), "natOutgoing") {
		t.Error("drift not repaired")
	}
}

// TestCIDRChange: an immutable change makes a new pool and disables the
// old one, which is deleted only once its last IPAMBlock is gone.
func TestCIDRChange(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	r := NewReconciler(s.NetdClient(t, "node-a"), APIV1, testLog(t), "node-a")
	ctx := t.Context()
	if _, err := r.Reconcile(ctx, state("10.244.0.0/16", false)); err != nil {
		t.Fatal(err)
	}
	host := "host:node-a"
	create(t, c, IPAMBlocks, "IPAMBlock", "10-244-0-0-26", nil, map[string]any{
		"cidr": "10.244.0.0/26", "affinity": host, "strictAffinity": false,
		"allocations": []any{int64(0), nil}, "unallocated": []any{int64(1)},
		"attributes": []any{map[string]any{"handle_id": "k8s-pod-network.x"}},
	})
	next := state("10.245.0.0/16", false)
	p, err := r.Plan(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ops(p), "create IPPool/pods-10-245-0-0-16-26, disable IPPool/pods"; got != want {
		t.Fatalf("plan %q, want %q\n%s", got, want, p)
	}
	if _, err := r.Apply(ctx, p); err != nil {
		t.Fatal(err)
	}
	newPool := get(t, c, IPPools, "pods-10-245-0-0-16-26")
	if specString(newPool, "cidr") != "10.245.0.0/16" || newPool.GetAnnotations()[PoolAnnotation] != "pods" {
		t.Errorf("new pool %v", newPool.Object)
	}
	if !specBool(get(t, c, IPPools, "pods"), "disabled") {
		t.Error("old pool not disabled")
	}
	for range 2 { // pending, and stays pending
		st, err := r.Reconcile(ctx, next)
		if err != nil {
			t.Fatal(err)
		}
		if pools := poolsOnly(st.Pending); len(pools) != 1 || pools[0].Name != "pods" || len(st.Applied) != 0 {
			t.Fatalf("status %+v", st)
		}
	}
	if !exists(t, c, IPPools, "pods") {
		t.Fatal("pool with an IPAMBlock was deleted")
	}
	evs, err := c.Dynamic.Resource(kube.Events).Namespace(kube.EventNamespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	reasons := map[string]int{}
	for _, e := range evs.Items {
		name, _, _ := unstructured.NestedString(e.Object, "involvedObject", "name")
		reason, _, _ := unstructured.NestedString(e.Object, "reason")
		reasons[name+"/"+reason]++
	}
	if reasons["pods/WaitingToDrain"] != 1 || reasons["pods/Disabled"] != 1 || reasons["pods-10-245-0-0-16-26/Created"] != 1 {
		t.Errorf("events %v", reasons)
	}
	if err := c.Dynamic.Resource(IPAMBlocks).Delete(ctx, "10-244-0-0-26", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	st, err := r.Reconcile(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Applied) != 1 || st.Applied[0].Op != OpDelete || exists(t, c, IPPools, "pods") {
		t.Fatalf("drained pool not deleted: %+v", st)
	}
	// Back to the original cidr: the name "pods" is free again.
	p, err = r.Plan(ctx, state("10.244.0.0/16", false))
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ops(p), "create IPPool/pods, disable IPPool/pods-10-245-0-0-16-26"; got != want {
		t.Errorf("plan back %q, want %q", got, want)
	}
}

// TestUnownedLeftAlone: objects without the owner label are reported and
// never written, even where they differ from the policy or are in its way.
func TestUnownedLeftAlone(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	r := NewReconciler(s.NetdClient(t, "node-a"), APIV1, testLog(t), "node-a")
	ctx := t.Context()
	create(t, c, IPPools, "IPPool", "manual", nil, map[string]any{"cidr": "192.168.100.0/24", "blockSize": int64(26)})
	create(t, c, FelixConfigurations, "FelixConfiguration", "default", nil, map[string]any{"mtuIfacePattern": "^eth"})
	before := versions(t, c)
	st, err := r.Reconcile(ctx, state("10.244.0.0/16", false))
	if err != nil {
		t.Fatal(err)
	}
	var unowned []string
	for _, u := range st.Unowned {
		unowned = append(unowned, u.Kind+"/"+u.Name)
	}
	slices.Sort(unowned)
	if want := []string{"FelixConfiguration/default", "IPPool/manual"}; !slices.Equal(unowned, want) {
		t.Errorf("unowned %v, want %v", unowned, want)
	}
	after := versions(t, c)
	for k, v := range before {
		if after[k] != v {
			t.Errorf("%s was written (%s → %s)", k, v, after[k])
		}
	}
	if specString(get(t, c, FelixConfigurations, "default"), "mtuIfacePattern") != "^eth" {
		t.Error("unowned felix configuration modified")
	}
	// An unowned pool overlapping a policy pool blocks its creation.
	create(t, c, IPPools, "IPPool", "legacy", nil, map[string]any{"cidr": "10.250.0.0/16", "blockSize": int64(26)})
	p, err := r.Plan(ctx, state("10.250.0.0/20", false))
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range p.Actions {
		if a.Op == OpCreate && a.Kind == "IPPool" {
			t.Errorf("plans to create a pool overlapping an unowned one: %s", p)
		}
	}
	if !strings.Contains(p.String(), "unowned              IPPool legacy (overlaps policy pool pods") {
		t.Errorf("plan does not report the overlap:\n%s", p)
	}
	// Labelling an object hands it to netd.
	felix := get(t, c, FelixConfigurations, "default")
	felix.SetLabels(owner)
	if _, err := c.Dynamic.Resource(FelixConfigurations).Update(ctx, felix, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Reconcile(ctx, state("10.244.0.0/16", false)); err != nil {
		t.Fatal(err)
	}
	if specString(get(t, c, FelixConfigurations, "default"), "mtuIfacePattern") != "^tailscale0$" {
		t.Error("adopted felix configuration not updated")
	}
}

// TestConcurrentEdit: an object edited between Plan and Apply is not
// overwritten; the conflict is reported and the rest of the plan applies.
func TestConcurrentEdit(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	r := NewReconciler(s.NetdClient(t, "node-a"), APIV1, testLog(t), "node-a")
	ctx := t.Context()
	if _, err := r.Reconcile(ctx, state("10.244.0.0/16", false)); err != nil {
		t.Fatal(err)
	}
	next := state("10.244.0.0/16", true)
	next.Calico.StrictAffinity = false
	p, err := r.Plan(ctx, next)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := ops(p), "update IPAMConfig/default, update IPPool/pods"; got != want {
		t.Fatalf("plan %q, want %q", got, want)
	}
	// Someone else edits the pool after the plan was made.
	pool := get(t, c, IPPools, "pods")
	spec(pool)["nodeSelector"] = "edited-by-hand == 'true'"
	if _, err := c.Dynamic.Resource(IPPools).Update(ctx, pool, metav1.UpdateOptions{FieldManager: "kubectl"}); err != nil {
		t.Fatal(err)
	}
	res, err := r.Apply(ctx, p)
	if !errors.Is(err, ErrConflict) {
		t.Fatalf("apply err = %v, want ErrConflict", err)
	}
	if len(res.Conflicts) != 1 || res.Conflicts[0].Name != "pods" || len(res.Applied) != 1 || res.Applied[0].Kind != "IPAMConfig" {
		t.Errorf("result %+v", res)
	}
	pool = get(t, c, IPPools, "pods")
	if specString(pool, "nodeSelector") != "edited-by-hand == 'true'" || specBool(pool, "natOutgoing") {
		t.Errorf("concurrent edit overwritten: %v", pool.Object["spec"])
	}
	// A create that races with another writer is a conflict too.
	var race Plan
	pool.SetResourceVersion("")
	race.Actions = []Action{{Op: OpCreate, Kind: "IPPool", Name: "pods", obj: pool}}
	if _, err := r.Apply(ctx, race); !errors.Is(err, ErrConflict) {
		t.Errorf("create over an existing object: %v", err)
	}
}

func poolsOnly(ps []Pending) []Pending {
	var out []Pending
	for _, p := range ps {
		if p.Kind == "IPPool" {
			out = append(out, p)
		}
	}
	return out
}
