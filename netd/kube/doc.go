// Package kube is netd's small Kubernetes client layer: a dynamic client
// built from a kubeconfig, a Lease-based leader elector ("run while
// holding Lease X"), an Event recorder, and errors that name the RBAC rule
// a refused request needs.
//
// It deliberately avoids k8s.io/client-go/kubernetes (the typed clientset),
// client-go's leaderelection and tools/record: their packages register
// every built-in API type in a scheme at init and cost megabytes resident
// in every netd process, with or without --kubeconfig. Everything here
// speaks JSON through the dynamic client, and links only apimachinery and
// client-go's rest/dynamic/clientcmd packages, whose init is cheap.
//
// Callers:
//
//	c, err := kube.NewClient(cfg)                    // cfg from kube.LoadConfig
//	err = kube.RunWhileHolding(ctx, c, kube.Lease{Name: "netd-tailnet", Identity: node}, func(ctx context.Context) {
//		// leading until ctx is done
//	})
//	rec := kube.NewRecorder(c, "netd", node)
//	err = rec.Event(ctx, kube.Ref{...}, kube.Normal, "Applied", "...")
package kube
