package calico

import (
	"context"
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/ducksnest/netd/netd/kube"
)

// ErrConflict marks a write refused because the object changed after the
// plan read it (or appeared since): nothing was overwritten.
var ErrConflict = errors.New("changed since it was read: not overwritten")

// Result is what Apply did.
type Result struct {
	Applied   []Action `json:"applied,omitempty"`
	Conflicts []Action `json:"conflicts,omitempty"`
}

// Apply carries out the writes of p, in order (creates, updates, disables,
// deletes). Each update and delete is conditional on the resourceVersion
// the plan read; a create fails if the object appeared meanwhile. A
// conflict is reported (errors.Is(err, ErrConflict)) and the rest of the
// plan still runs. A pool is deleted only if it still has no IPAMBlock.
func (r *Reconciler) Apply(ctx context.Context, p Plan) (Result, error) {
	var res Result
	var errs []error
	for _, a := range p.Actions {
		if !a.Writes() {
			continue
		}
		err := r.apply(ctx, a)
		switch {
		case err == nil:
			res.Applied = append(res.Applied, a)
		case errors.Is(err, ErrConflict):
			res.Conflicts = append(res.Conflicts, a)
			errs = append(errs, err)
		default:
			errs = append(errs, err)
		}
	}
	r.resultEvents(ctx, res)
	return res, errors.Join(errs...)
}

func (r *Reconciler) apply(ctx context.Context, a Action) error {
	what := describe(a.Kind, a.Name)
	gvr, _ := r.api.resourceOf(a.Kind)
	res := r.dyn.Resource(gvr)
	var err error
	verb := string(a.Op)
	switch a.Op {
	case OpCreate:
		_, err = res.Create(ctx, a.obj, metav1.CreateOptions{FieldManager: FieldManager})
		if apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("creating %s: it appeared meanwhile: %w", what, ErrConflict)
		}
	case OpUpdate, OpDisable:
		verb = "update"
		obj := a.obj.DeepCopy()
		obj.SetResourceVersion(a.ResourceVersion)
		_, err = res.Update(ctx, obj, metav1.UpdateOptions{FieldManager: FieldManager})
	case OpDelete:
		if err := r.checkDrained(ctx, a.Name); err != nil {
			return err
		}
		rv := a.ResourceVersion
		err = res.Delete(ctx, a.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{ResourceVersion: &rv}})
		if apierrors.IsNotFound(err) {
			return nil
		}
	}
	if apierrors.IsConflict(err) {
		return fmt.Errorf("%s %s at resourceVersion %s: %w", a.Op, what, a.ResourceVersion, ErrConflict)
	}
	if err != nil {
		return fmt.Errorf("%s %s: %w", a.Op, what, kube.Explain(err, verb, gvr, ""))
	}
	return nil
}

// checkDrained re-reads a pool and the IPAMBlocks right before a delete.
func (r *Reconciler) checkDrained(ctx context.Context, name string) error {
	pool, err := r.dyn.Resource(r.api.IPPools).Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("getting IPPool %s: %w", name, kube.Explain(err, "get", r.api.IPPools, ""))
	}
	pc, err := poolCIDR(pool)
	if err != nil {
		return err
	}
	l, err := r.dyn.Resource(r.api.IPAMBlocks).List(ctx, metav1.ListOptions{})
	if err != nil {
		return fmt.Errorf("listing ipamblocks: %w", kube.Explain(err, "list", r.api.IPAMBlocks, ""))
	}
	if n := blocksIn(pc, l.Items); n > 0 {
		return fmt.Errorf("delete IPPool %s: %d IPAMBlock(s) appeared: %w", name, n, ErrConflict)
	}
	return nil
}
