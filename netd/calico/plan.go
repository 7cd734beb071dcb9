package calico

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/ducksnest/netd/netd/kube"
	"github.com/ducksnest/netd/policy/desired"
)

// Op is what an Action does.
type Op string

// Operations, in the order Apply runs them (add before delete).
const (
	OpCreate  Op = "create"
	OpUpdate  Op = "update"
	OpDisable Op = "disable" // a retired pool: stop allocating from it
	OpDelete  Op = "delete"  // a retired, disabled pool without IPAMBlocks
	// OpWaitDrain is a retired pool that still has IPAMBlocks: it is
	// deleted once they are gone. Nothing is written.
	OpWaitDrain Op = "delete-when-drained"
	// OpUnowned is an object without netd's owner label that differs from
	// the policy or is in its way. Nothing is written; it is reported.
	OpUnowned Op = "unowned"
)

var opOrder = map[Op]int{OpCreate: 0, OpUpdate: 1, OpDisable: 2, OpDelete: 3, OpWaitDrain: 4, OpUnowned: 5}

// Action is one planned change to one object.
type Action struct {
	Op   Op     `json:"op"`
	Kind string `json:"kind"`
	Name string `json:"name"`
	// ResourceVersion is the version the plan read: Apply writes only if
	// the object is still at it. Empty for a create.
	ResourceVersion string `json:"resourceVersion,omitempty"`
	// Changes are the field changes, "spec.natOutgoing: false → true".
	Changes []string `json:"changes,omitempty"`
	Reason  string   `json:"reason,omitempty"`
	// Blocks counts the IPAMBlocks left in a retired pool.
	Blocks int `json:"blocks,omitempty"`

	obj *unstructured.Unstructured // what to write
}

// Writes reports whether Apply writes anything for the action.
func (a Action) Writes() bool {
	return a.Op == OpCreate || a.Op == OpUpdate || a.Op == OpDisable || a.Op == OpDelete
}

func (a Action) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-20s %s", a.Op, describe(a.Kind, a.Name))
	if a.Reason != "" {
		fmt.Fprintf(&b, " (%s)", a.Reason)
	}
	for _, c := range a.Changes {
		fmt.Fprintf(&b, "\n    %s", c)
	}
	return b.String()
}

// Plan is what Apply would do to make the cluster match the policy.
type Plan struct {
	Actions []Action `json:"actions"`
	// Notes are policy settings that cannot be applied through the CRDs.
	Notes []Pending `json:"notes,omitempty"`
}

// Writes counts the actions that write.
func (p Plan) Writes() int {
	n := 0
	for _, a := range p.Actions {
		if a.Writes() {
			n++
		}
	}
	return n
}

// String renders the plan one action per line, "no changes" if empty.
func (p Plan) String() string {
	var b strings.Builder
	if len(p.Actions) == 0 {
		b.WriteString("calico: no changes\n")
	}
	for _, a := range p.Actions {
		b.WriteString(a.String())
		b.WriteByte('\n')
	}
	for _, n := range p.Notes {
		fmt.Fprintf(&b, "note: %s: %s\n", describe(n.Kind, n.Name), n.Reason)
	}
	return b.String()
}

// Plan reads the cluster and returns what would change. It writes nothing.
func (r *Reconciler) Plan(ctx context.Context, st *desired.State) (Plan, error) {
	want, notes, err := desiredObjects(st, r.api)
	if err != nil {
		return Plan{}, err
	}
	p := Plan{Notes: notes}
	var wantPools []*unstructured.Unstructured
	for _, w := range want {
		if w.GetKind() == "IPPool" {
			wantPools = append(wantPools, w)
			continue
		}
		a, err := r.planSingleton(ctx, w)
		if err != nil {
			return Plan{}, err
		}
		if a != nil {
			p.Actions = append(p.Actions, *a)
		}
	}
	pools, err := r.dyn.Resource(r.api.IPPools).List(ctx, metav1.ListOptions{})
	if err != nil {
		return Plan{}, fmt.Errorf("listing ippools: %w", kube.Explain(err, "list", r.api.IPPools, ""))
	}
	acts, err := r.planPools(ctx, wantPools, pools.Items)
	if err != nil {
		return Plan{}, err
	}
	p.Actions = append(p.Actions, acts...)
	slices.SortStableFunc(p.Actions, func(a, b Action) int {
		if d := opOrder[a.Op] - opOrder[b.Op]; d != 0 {
			return d
		}
		return strings.Compare(a.Kind+"/"+a.Name, b.Kind+"/"+b.Name)
	})
	return p, nil
}

// planSingleton plans one object that has a fixed name ("default").
func (r *Reconciler) planSingleton(ctx context.Context, w *unstructured.Unstructured) (*Action, error) {
	gvr, _ := r.api.resourceOf(w.GetKind())
	cur, err := r.dyn.Resource(gvr).Get(ctx, w.GetName(), metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		return &Action{Op: OpCreate, Kind: w.GetKind(), Name: w.GetName(), obj: w}, nil
	case err != nil:
		return nil, fmt.Errorf("getting %s: %w", describe(w.GetKind(), w.GetName()), kube.Explain(err, "get", gvr, ""))
	}
	next, changes := merge(cur, w)
	if len(changes) == 0 {
		return nil, nil
	}
	a := &Action{Op: OpUpdate, Kind: w.GetKind(), Name: w.GetName(), ResourceVersion: cur.GetResourceVersion(), Changes: changes, obj: next}
	if !owned(cur) {
		a.Op, a.obj = OpUnowned, nil
		a.Reason = "not labelled " + ownerSelector + ": left alone"
	}
	return a, nil
}

// planPools matches the policy's pools to the cluster's.
func (r *Reconciler) planPools(ctx context.Context, want []*unstructured.Unstructured, have []unstructured.Unstructured) ([]Action, error) {
	var acts []Action
	byName := map[string]*unstructured.Unstructured{}
	for i := range have {
		byName[have[i].GetName()] = &have[i]
	}
	matched := map[string]bool{}
	reported := map[string]bool{}
	for _, w := range want {
		wcidr, err := poolCIDR(w)
		if err != nil {
			return nil, err
		}
		cur := matchPool(w, have, matched)
		if cur != nil {
			matched[cur.GetName()] = true
			next, changes := merge(cur, w)
			if len(changes) > 0 {
				acts = append(acts, Action{Op: OpUpdate, Kind: "IPPool", Name: cur.GetName(),
					ResourceVersion: cur.GetResourceVersion(), Changes: changes, obj: next})
			}
			continue
		}
		// An unowned pool that overlaps the new one is in the way: creating
		// an overlapping pool next to it is not netd's call.
		if u := overlappingUnowned(wcidr, have); u != nil {
			reported[u.GetName()] = true
			acts = append(acts, Action{Op: OpUnowned, Kind: "IPPool", Name: u.GetName(),
				ResourceVersion: u.GetResourceVersion(),
				Reason:          fmt.Sprintf("overlaps policy pool %s (%s) but is not labelled %s: left alone, %s not created", w.GetName(), wcidr, ownerSelector, w.GetName())})
			continue
		}
		obj := w.DeepCopy()
		reason := ""
		if old, taken := byName[w.GetName()]; taken {
			obj.SetName(replacementName(w))
			reason = fmt.Sprintf("replaces %s: cidr/blockSize are immutable", old.GetName())
		}
		acts = append(acts, Action{Op: OpCreate, Kind: "IPPool", Name: obj.GetName(), Reason: reason,
			Changes: []string{fmt.Sprintf("spec.cidr: %s, spec.blockSize: %v", wcidr, spec(w)["blockSize"])}, obj: obj})
	}
	var blocks []unstructured.Unstructured
	blocksRead := false
	for i := range have {
		cur := &have[i]
		if matched[cur.GetName()] || reported[cur.GetName()] {
			continue
		}
		if !owned(cur) {
			acts = append(acts, Action{Op: OpUnowned, Kind: "IPPool", Name: cur.GetName(),
				ResourceVersion: cur.GetResourceVersion(), Reason: "not in the policy and not labelled " + ownerSelector + ": left alone"})
			continue
		}
		if !specBool(cur, "disabled") {
			next := cur.DeepCopy()
			spec(next)["disabled"] = true
			acts = append(acts, Action{Op: OpDisable, Kind: "IPPool", Name: cur.GetName(),
				ResourceVersion: cur.GetResourceVersion(), Reason: "retired: no longer in the policy",
				Changes: []string{"spec.disabled: false → true"}, obj: next})
			continue
		}
		if !blocksRead {
			l, err := r.dyn.Resource(r.api.IPAMBlocks).List(ctx, metav1.ListOptions{})
			if err != nil {
				return nil, fmt.Errorf("listing ipamblocks: %w", kube.Explain(err, "list", r.api.IPAMBlocks, ""))
			}
			blocks, blocksRead = l.Items, true
		}
		pc, err := poolCIDR(cur)
		if err != nil {
			return nil, err
		}
		n := blocksIn(pc, blocks)
		a := Action{Op: OpDelete, Kind: "IPPool", Name: cur.GetName(), ResourceVersion: cur.GetResourceVersion(),
			Reason: "retired, disabled and drained"}
		if n > 0 {
			a.Op, a.Blocks = OpWaitDrain, n
			a.Reason = fmt.Sprintf("retired and disabled; %d IPAMBlock(s) still allocated", n)
		}
		acts = append(acts, a)
	}
	return acts, nil
}

// matchPool finds the owned pool implementing w: same cidr and blockSize,
// preferring the one named (or annotated) after w.
func matchPool(w *unstructured.Unstructured, have []unstructured.Unstructured, matched map[string]bool) *unstructured.Unstructured {
	var best *unstructured.Unstructured
	for i := range have {
		h := &have[i]
		if matched[h.GetName()] || !owned(h) || !sameImmutable(h, w) {
			continue
		}
		if h.GetName() == w.GetName() || h.GetAnnotations()[PoolAnnotation] == w.GetName() {
			return h
		}
		if best == nil {
			best = h
		}
	}
	return best
}

func overlappingUnowned(p netip.Prefix, have []unstructured.Unstructured) *unstructured.Unstructured {
	for i := range have {
		if owned(&have[i]) {
			continue
		}
		if c, err := poolCIDR(&have[i]); err == nil && c.Overlaps(p) {
			return &have[i]
		}
	}
	return nil
}

// blocksIn counts the IPAMBlocks inside pool.
func blocksIn(pool netip.Prefix, blocks []unstructured.Unstructured) int {
	n := 0
	for i := range blocks {
		if c, err := poolCIDR(&blocks[i]); err == nil && pool.Bits() <= c.Bits() && pool.Contains(c.Addr()) {
			n++
		}
	}
	return n
}
