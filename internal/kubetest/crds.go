package kubetest

import (
	"context"
	"crypto/tls"
	"fmt"
	"io/fs"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"sigs.k8s.io/yaml"

	"github.com/ducksnest/netd/netd/calico/crds"
)

var crdResource = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

func insecureTLS() *tls.Config { return &tls.Config{InsecureSkipVerify: true} } // a test server on loopback

// installCRDs creates the Calico CRDs and waits until they are served.
func (s *Server) installCRDs() error {
	dyn, err := dynamic.NewForConfig(s.Config)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	pattern := "*.yaml"
	if s.crds == CalicoV3 {
		pattern = "v3/*.yaml"
	}
	files, err := fs.Glob(crds.FS, pattern)
	if err != nil {
		return err
	}
	var names []string
	for _, f := range files {
		b, err := fs.ReadFile(crds.FS, f)
		if err != nil {
			return err
		}
		var obj map[string]any
		if err := yaml.Unmarshal(b, &obj); err != nil {
			return fmt.Errorf("%s: %w", f, err)
		}
		u := &unstructured.Unstructured{Object: obj}
		if _, err := dyn.Resource(crdResource).Create(ctx, u, metav1.CreateOptions{}); err != nil {
			return fmt.Errorf("creating CRD %s: %w", u.GetName(), err)
		}
		names = append(names, u.GetName())
	}
	for _, n := range names {
		err := retry(30*time.Second, "CRD "+n+" established", func() error {
			u, err := dyn.Resource(crdResource).Get(ctx, n, metav1.GetOptions{})
			if err != nil {
				return err
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, c := range conds {
				c, _ := c.(map[string]any)
				if c["type"] == "Established" && c["status"] == "True" {
					return nil
				}
			}
			return fmt.Errorf("CRD %s not established", n)
		})
		if err != nil {
			return err
		}
	}
	return nil
}
