package kubetest

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/ducksnest/netd/deploy/rbac"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/kube"
)

// The PKI of a test server is the one nixos/pki/mkpki.sh issues for a
// cluster whose control plane is "kubetest" at 127.0.0.1: the API server
// serves mkpki's apiserver certificate and trusts its CA for client
// certificates, so netd authenticates exactly as on a real node
// (CN=ducksnest:netd:<node>, O=ducksnest:netd) and is authorised only by
// deploy/rbac (--authorization-mode=Node,RBAC).
const controlPlane = "kubetest"

// mkpki runs the repository's PKI script for the control plane and nodes.
func (s *Server) mkpki(nodes ...string) error {
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	list := []string{controlPlane + "=127.0.0.1"}
	for i, n := range nodes {
		list = append(list, fmt.Sprintf("%s=127.0.1.%d", n, i%250+1))
	}
	cmd := exec.Command("bash", filepath.Join(root, "nixos", "pki", "mkpki.sh"), "-o", s.pkiDir())
	cmd.Env = append(os.Environ(), "CONTROL_PLANE="+controlPlane, "NODES="+strings.Join(list, " "))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("nixos/pki/mkpki.sh: %w: %s", err, testutil.Tail(string(out), 5))
	}
	return nil
}

func (s *Server) pkiDir() string { return filepath.Join(s.dir, "pki") }

// pkiArgs are the API server flags of the PKI.
func (s *Server) pkiArgs() []string {
	d := s.pkiDir()
	return []string{
		"--client-ca-file=" + filepath.Join(d, "ca", "ca.pem"),
		"--tls-cert-file=" + filepath.Join(d, "issued", "apiserver.pem"),
		"--tls-private-key-file=" + filepath.Join(d, "issued", "apiserver-key.pem"),
	}
}

// NetdKubeconfig returns the kubeconfig mkpki.sh issues for node's netd
// (hosts/<node>/netd.kubeconfig), pointed at this server.
func (s *Server) NetdKubeconfig(node string) (string, error) {
	s.pkiMu.Lock()
	defer s.pkiMu.Unlock()
	s.pkiNodes = append(s.pkiNodes, node)
	if err := s.mkpki(s.pkiNodes...); err != nil {
		return "", err
	}
	b, err := os.ReadFile(filepath.Join(s.pkiDir(), "hosts", node, "netd.kubeconfig"))
	if err != nil {
		return "", err
	}
	b = bytes.Replace(b, []byte("server: https://127.0.0.1:6443"), []byte("server: "+s.Config.Host), 1)
	path := filepath.Join(s.dir, "netd-"+node+".kubeconfig")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return "", err
	}
	return path, nil
}

// NetdClient is a client authenticated as node's netd.
func (s *Server) NetdClient(t testing.TB, node string) *kube.Client {
	t.Helper()
	path, err := s.NetdKubeconfig(node)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := kube.LoadConfig(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = 100, 200
	c, err := kube.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// applyRBAC creates the objects of deploy/rbac/netd.json, as the control
// plane's configuration does.
func (s *Server) applyRBAC(dyn dynamic.Interface) error {
	var list struct {
		Items []map[string]any `json:"items"`
	}
	if err := json.Unmarshal(rbac.Manifest, &list); err != nil {
		return fmt.Errorf("deploy/rbac/netd.json: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, o := range list.Items {
		u := &unstructured.Unstructured{Object: o}
		gvr := schema.GroupVersionResource{Group: "rbac.authorization.k8s.io", Version: "v1",
			Resource: strings.ToLower(u.GetKind()) + "s"}
		var err error
		if ns := u.GetNamespace(); ns != "" {
			_, err = dyn.Resource(gvr).Namespace(ns).Create(ctx, u, metav1.CreateOptions{})
		} else {
			_, err = dyn.Resource(gvr).Create(ctx, u, metav1.CreateOptions{})
		}
		if err != nil {
			return fmt.Errorf("applying %s %s: %w", u.GetKind(), u.GetName(), err)
		}
	}
	return nil
}
