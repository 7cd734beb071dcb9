package kube

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Two kubeconfig files: a holds the clusters and the current context, b the
// users and a second context. kubectl merges a $KUBECONFIG list.
const (
	kubeconfigA = `apiVersion: v1
kind: Config
current-context: dev
clusters:
- name: dev
  cluster: {server: "https://dev.example:6443", insecure-skip-tls-verify: true}
- name: prod
  cluster: {server: "https://prod.example:6443", insecure-skip-tls-verify: true}
contexts:
- name: dev
  context: {cluster: dev, user: alice}
`
	kubeconfigB = `apiVersion: v1
kind: Config
current-context: prod
clusters:
- name: dev
  cluster: {server: "https://shadowed.example:6443"}
users:
- name: alice
  user: {token: alice-token}
- name: netd
  user: {token: netd-token}
contexts:
- name: prod
  context: {cluster: prod, user: netd}
`
)

// TestKubeconfigLoadingRules: the $KUBECONFIG list is merged (first file
// wins per value), --context selects, --kubeconfig reads only that file, a
// missing explicit file is an error that says so, and no configuration at
// all is ErrNoKubeconfig. No API server is involved: only the REST
// configuration built from the files.
func TestKubeconfigLoadingRules(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	for p, s := range map[string]string{a: kubeconfigA, b: kubeconfigB} {
		if err := os.WriteFile(p, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	list := a + string(filepath.ListSeparator) + filepath.Join(dir, "missing") + string(filepath.ListSeparator) + b
	for _, tc := range []struct {
		name, env string
		k         Kubeconfig
		host, tok string
		err       string
	}{
		{name: "merged list, current context from the first file", env: list, host: "https://dev.example:6443", tok: "alice-token"},
		{name: "merged list, --context from the second file", env: list, k: Kubeconfig{Context: "prod"}, host: "https://prod.example:6443", tok: "netd-token"},
		{name: "--kubeconfig reads only that file", env: list, k: Kubeconfig{Path: b}, err: `context "prod" names no cluster with a server`},
		{name: "--kubeconfig with --context", k: Kubeconfig{Path: a, Context: "dev"}, host: "https://dev.example:6443"},
		{name: "unknown --context", env: list, k: Kubeconfig{Context: "nope"}, err: `context "nope"`},
		{name: "missing --kubeconfig", k: Kubeconfig{Path: filepath.Join(dir, "missing")}, err: "no such file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("KUBECONFIG", tc.env)
			cfg, err := tc.k.Load()
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("err = %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if cfg.Host != tc.host || cfg.BearerToken != tc.tok {
				t.Errorf("host %q token %q, want %q %q", cfg.Host, cfg.BearerToken, tc.host, tc.tok)
			}
		})
	}
	t.Run("missing explicit file is fs.ErrNotExist", func(t *testing.T) {
		_, err := Kubeconfig{Path: filepath.Join(dir, "missing")}.Load()
		if !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("err = %v, want one wrapping fs.ErrNotExist", err)
		}
	})
	t.Run("nothing found", func(t *testing.T) {
		// Only files that do not exist, and no in-cluster service account
		// (KUBERNETES_SERVICE_HOST unset).
		t.Setenv("KUBECONFIG", filepath.Join(dir, "missing"))
		t.Setenv("KUBERNETES_SERVICE_HOST", "")
		if _, err := (Kubeconfig{}).Load(); !errors.Is(err, ErrNoKubeconfig) {
			t.Errorf("err = %v, want ErrNoKubeconfig", err)
		}
	})
}
