package kube

import (
	"errors"
	"fmt"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// RBACManifest is where netd's RBAC rules live in the repository (and,
// through the control plane's NixOS configuration, in the cluster).
const RBACManifest = "deploy/rbac/netd.json"

// ForbiddenError is a request the API server refused for lack of an RBAC
// rule. Its message names the verb, the resource and the rule that is
// missing, so that `netd status` and the log say what to grant.
type ForbiddenError struct {
	Verb      string
	Resource  schema.GroupVersionResource
	Namespace string // empty: cluster scope
	Err       error
}

func (e *ForbiddenError) Error() string {
	scope := "at cluster scope (ClusterRole)"
	if e.Namespace != "" {
		scope = fmt.Sprintf("in namespace %s (Role)", e.Namespace)
	}
	group := e.Resource.Group
	if group == "" {
		group = `""`
	}
	return fmt.Sprintf("forbidden: %s %s: missing RBAC rule {apiGroups: [%s], resources: [%s], verbs: [%s]} %s; netd's rules are in %s: %v",
		e.Verb, e.Resource.GroupResource(), group, e.Resource.Resource, e.Verb, scope, RBACManifest, e.Err)
}

func (e *ForbiddenError) Unwrap() error { return e.Err }

// Explain turns a 403 from verb on gvr (in namespace ns, "" for cluster
// scope) into a *ForbiddenError; any other error is returned unchanged.
func Explain(err error, verb string, gvr schema.GroupVersionResource, ns string) error {
	if err == nil || !apierrors.IsForbidden(err) {
		return err
	}
	var f *ForbiddenError
	if errors.As(err, &f) {
		return err
	}
	return &ForbiddenError{Verb: verb, Resource: gvr, Namespace: ns, Err: err}
}

// IsForbidden reports whether err is (or wraps) a ForbiddenError.
func IsForbidden(err error) bool {
	var f *ForbiddenError
	return errors.As(err, &f)
}
