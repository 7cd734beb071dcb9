package kube

import (
	"context"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
)

// EventNamespace holds netd's Events. Its objects are cluster-scoped (the
// Calico objects) or not Kubernetes objects at all (the tailnet policy),
// and `kubectl describe` of a cluster-scoped object looks for Events in
// "default".
const EventNamespace = "default"

// Events is the core/v1 Event resource.
var Events = schema.GroupVersionResource{Version: "v1", Resource: "events"}

// Event types.
const (
	Normal  = "Normal"
	Warning = "Warning"
)

// Ref names the object an Event is about.
type Ref struct {
	APIVersion string
	Kind       string
	Name       string
	Namespace  string // empty for a cluster-scoped object
}

// Recorder records core/v1 Events in EventNamespace, one object per call
// (netd's Events are rare: a write, a conflict, a changed reason).
type Recorder struct {
	c         *Client
	component string
	instance  string
}

// NewRecorder returns a recorder for component ("netd") on instance (the
// node name).
func NewRecorder(c *Client, component, instance string) *Recorder {
	return &Recorder{c: c, component: component, instance: instance}
}

// Event records one Event about obj.
func (r *Recorder) Event(ctx context.Context, obj Ref, typ, reason, msg string) error {
	now := time.Now().UTC().Format(time.RFC3339)
	involved := map[string]any{"apiVersion": obj.APIVersion, "kind": obj.Kind, "name": obj.Name}
	if obj.Namespace != "" {
		involved["namespace"] = obj.Namespace
	}
	u := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "v1", "kind": "Event",
		"metadata":       map[string]any{"generateName": r.component + "-" + obj.Name + ".", "namespace": EventNamespace},
		"involvedObject": involved,
		"reason":         reason, "message": msg, "type": typ,
		"source":         map[string]any{"component": r.component, "host": r.instance},
		"firstTimestamp": now, "lastTimestamp": now, "count": int64(1),
		"reportingComponent": "ducksnest.dev/" + r.component, "reportingInstance": r.instance,
	}}
	if _, err := r.c.Dynamic.Resource(Events).Namespace(EventNamespace).Create(ctx, u, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("recording event %s for %s %s: %w", reason, obj.Kind, obj.Name, Explain(err, "create", Events, EventNamespace))
	}
	return nil
}
