package doctor

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/client-go/rest"

	"github.com/ducksnest/netd/netd/calico"
	"github.com/ducksnest/netd/netd/daemon"
	"github.com/ducksnest/netd/netd/kube"
)

// SocketStatus reads a running netd through its status socket.
type SocketStatus struct {
	Client daemon.StatusClient
	// the status is read once per run
	st  *daemon.Status
	err error
}

// NewSocketStatus returns a NetdStatus for the socket at path.
func NewSocketStatus(path string) *SocketStatus {
	return &SocketStatus{Client: daemon.StatusClient{Socket: path}}
}

// Status implements NetdStatus; it asks netd once and remembers the answer.
func (s *SocketStatus) Status(ctx context.Context) (daemon.Status, error) {
	if s.st == nil && s.err == nil {
		st, _, err := s.Client.Status(ctx)
		s.st, s.err = &st, err
	}
	return *s.st, s.err
}

// BFD implements NetdStatus from netd's netd_bfd_session_up metric.
func (s *SocketStatus) BFD(ctx context.Context) (map[netip.Addr]bool, bool, error) {
	b, err := s.Client.Metrics(ctx)
	if err != nil {
		return nil, false, err
	}
	return ParseBFDMetrics(b)
}

// ParseBFDMetrics reads netd_bfd_session_up{peer="ADDR"} samples from a
// Prometheus text exposition; on is false when netd exports no BFD metric
// at all (BFD off).
func ParseBFDMetrics(b []byte) (up map[netip.Addr]bool, on bool, err error) {
	up = map[netip.Addr]bool{}
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.HasPrefix(line, "netd_bfd_") {
			on = true
		}
		rest, ok := strings.CutPrefix(line, `netd_bfd_session_up{peer="`)
		if !ok {
			continue
		}
		addr, val, ok := strings.Cut(rest, `"} `)
		if !ok {
			return nil, on, fmt.Errorf("unexpected metric line %q", line)
		}
		a, err := netip.ParseAddr(addr)
		if err != nil {
			return nil, on, fmt.Errorf("metric line %q: %w", line, err)
		}
		up[a] = strings.TrimSpace(val) == "1"
	}
	return up, on, sc.Err()
}

// KubeCluster reads the API server with a kubeconfig, through the same
// lean client the daemon uses (no typed clientset, no discovery client).
type KubeCluster struct {
	c    *kube.Client
	http *http.Client
}

// NewKubeCluster builds the clients from a REST configuration (from
// kube.Kubeconfig).
func NewKubeCluster(cfg *rest.Config) (*KubeCluster, error) {
	cfg = rest.CopyConfig(cfg)
	cfg.Timeout = 10 * time.Second
	c, err := kube.NewClient(cfg)
	if err != nil {
		return nil, err
	}
	hc, err := rest.HTTPClientFor(cfg)
	if err != nil {
		return nil, fmt.Errorf("building http client: %w", err)
	}
	return &KubeCluster{c: c, http: hc}, nil
}

// Felix implements Cluster: the FelixConfiguration of the Calico API the
// cluster serves (projectcalico.org/v3 if served, else
// crd.projectcalico.org/v1), found as the daemon finds it.
func (k *KubeCluster) Felix(ctx context.Context) (FelixConfig, string, error) {
	api, err := calico.Discover(ctx, k.c)
	if err != nil {
		return FelixConfig{}, "", fmt.Errorf("asking which Calico API the cluster serves: %w", err)
	}
	gvr := api.FelixConfigurations
	src := gvr.GroupVersion().String()
	u, err := k.c.Dynamic.Resource(gvr).Get(ctx, "default", metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return FelixConfig{}, src, fmt.Errorf("no FelixConfiguration \"default\" (%s)", src)
	}
	if err != nil {
		return FelixConfig{}, src, fmt.Errorf("reading FelixConfiguration default (%s): %w", src, err)
	}
	return felixFrom(u), src, nil
}

func felixFrom(u *unstructured.Unstructured) FelixConfig {
	var fc FelixConfig
	if s, ok, _ := unstructured.NestedString(u.Object, "spec", "interfaceExclude"); ok {
		fc.InterfaceExclude = &s
	}
	if s, ok, _ := unstructured.NestedString(u.Object, "spec", "mtuIfacePattern"); ok {
		fc.MTUIfacePattern = &s
	}
	if v, ok, _ := unstructured.NestedFieldNoCopy(u.Object, "spec", "iptablesMarkMask"); ok {
		var m uint32
		switch n := v.(type) {
		case int64:
			m = uint32(n)
		case float64:
			m = uint32(n)
		}
		fc.IptablesMarkMask = &m
	}
	return fc
}

// ServerTime implements Cluster with the Date header of GET /version.
func (k *KubeCluster) ServerTime(ctx context.Context) (time.Time, time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(k.c.Config.Host, "/")+"/version", nil)
	if err != nil {
		return time.Time{}, 0, err
	}
	start := time.Now()
	resp, err := k.http.Do(req)
	if err != nil {
		return time.Time{}, 0, fmt.Errorf("GET /version: %w", err)
	}
	rtt := time.Since(start)
	resp.Body.Close()
	d, err := http.ParseTime(resp.Header.Get("Date"))
	if err != nil {
		return time.Time{}, rtt, fmt.Errorf("the API server's Date header %q: %w", resp.Header.Get("Date"), err)
	}
	return d, rtt, nil
}
