package kube

import (
	"fmt"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
)

// Client is what netd needs to talk to the API server.
type Client struct {
	// Dynamic reads and writes any resource as unstructured JSON.
	Dynamic dynamic.Interface
	// Config is the REST configuration it was built from (for discovery).
	Config *rest.Config
}

// NewClient builds the client for cfg, with user agent "netd".
func NewClient(cfg *rest.Config) (*Client, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.UserAgent = "netd"
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return nil, fmt.Errorf("building dynamic client: %w", err)
	}
	return &Client{Dynamic: dyn, Config: cfg}, nil
}

// LoadConfig reads a kubeconfig file; an empty path means in-cluster
// configuration or the default loading rules ($KUBECONFIG, ~/.kube/config).
func LoadConfig(kubeconfig string) (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = kubeconfig
	cfg, err := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, nil).ClientConfig()
	if err != nil {
		return nil, fmt.Errorf("loading kubeconfig %q: %w", kubeconfig, err)
	}
	return cfg, nil
}
