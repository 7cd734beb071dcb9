package kubetest

import (
	"context"
	"os"
	"strconv"
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// TestServer starts the pair, lists every Calico CRD's resource through
// the kubeconfig file, restarts the API server on the same port, and
// checks that both processes are gone after Stop.
func TestServer(t *testing.T) {
	s := Start(t)
	ctx := t.Context()
	cfg, err := clientcmd.BuildConfigFromFlags("", s.Kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	dyn := dynamic.NewForConfigOrDie(cfg)
	for _, r := range []string{"ippools", "ipamblocks", "ipamhandles", "blockaffinities", "ipamconfigs", "felixconfigurations", "bgpconfigurations"} {
		gvr := schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: r}
		if _, err := dyn.Resource(gvr).List(ctx, metav1.ListOptions{}); err != nil {
			t.Errorf("listing %s: %v", r, err)
		}
	}
	kube := kubernetes.NewForConfigOrDie(s.Config)
	if _, err := kube.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("kube-system namespace: %v", err)
	}
	api, etcd := s.api.cmd.Process.Pid, s.etcd.cmd.Process.Pid
	if err := s.StopAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := dyn.Resource(schema.GroupVersionResource{Group: "crd.projectcalico.org", Version: "v1", Resource: "ippools"}).List(context.Background(), metav1.ListOptions{}); err == nil {
		t.Error("API server still answers after StopAPIServer")
	}
	if err := s.StartAPIServer(); err != nil {
		t.Fatal(err)
	}
	if _, err := kube.CoreV1().Namespaces().Get(ctx, "kube-system", metav1.GetOptions{}); err != nil {
		t.Errorf("after restart: %v", err)
	}
	api2 := s.api.cmd.Process.Pid
	if err := s.Stop(); err != nil {
		t.Fatal(err)
	}
	for _, pid := range []int{api, api2, etcd} {
		if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); err == nil {
			t.Errorf("pid %d still running after Stop", pid)
		}
	}
}
