package kube

import (
	"errors"
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

// Kubeconfig finds the API server and credentials exactly as kubectl does
// (client-go's clientcmd loading rules): Path (--kubeconfig) is the only
// file read when set; otherwise the files listed in $KUBECONFIG are merged
// (for each value, the first file that sets it wins; missing files are
// skipped); otherwise ~/.kube/config; inside a pod with none of these, the
// in-cluster service account. Context (--context) selects a context other
// than the current one.
type Kubeconfig struct {
	Path    string
	Context string
}

// ErrNoKubeconfig is returned by Kubeconfig.Load when the rules found no
// configuration at all.
var ErrNoKubeconfig = errors.New("no kubeconfig: none given with --kubeconfig, none in $KUBECONFIG or ~/.kube/config, not in a pod")

// Load returns the REST configuration the rules find, or ErrNoKubeconfig.
func (k Kubeconfig) Load() (*rest.Config, error) {
	rules := clientcmd.NewDefaultClientConfigLoadingRules()
	rules.ExplicitPath = k.Path
	cc := clientcmd.NewNonInteractiveDeferredLoadingClientConfig(rules, &clientcmd.ConfigOverrides{CurrentContext: k.Context})
	cfg, err := cc.ClientConfig()
	if clientcmd.IsEmptyConfig(err) {
		// clientcmd says "empty" both for no file at all and for a
		// context whose cluster is missing or has no server.
		raw, rerr := cc.RawConfig()
		if rerr == nil && len(raw.Clusters)+len(raw.Contexts)+len(raw.AuthInfos) == 0 {
			return nil, ErrNoKubeconfig
		}
		name := k.Context
		if name == "" {
			name = raw.CurrentContext
		}
		err = fmt.Errorf("context %q names no cluster with a server (kubectl config get-contexts lists them)", name)
	}
	switch {
	case err != nil && k.Path != "":
		return nil, fmt.Errorf("loading kubeconfig %s: %w", k.Path, err)
	case err != nil:
		return nil, fmt.Errorf("loading kubeconfig: %w", err)
	}
	return cfg, nil
}
