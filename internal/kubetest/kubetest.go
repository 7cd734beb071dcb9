// Package kubetest starts a real Kubernetes API server for tests: etcd and
// kube-apiserver on 127.0.0.1, built from the Go module proxy by
// scripts/kube-tools.sh, with --authorization-mode=Node,RBAC, the PKI of
// nixos/pki/mkpki.sh, netd's RBAC rules (deploy/rbac) and Calico's CRDs
// (netd/calico/crds: the crd.projectcalico.org/v1 ones, or Calico's native
// projectcalico.org/v3 ones) installed. The harness itself is an admin
// (Config); netd runs as a node identity (NetdClient, NetdKubeconfig).
// Processes are stopped by PID, API server before etcd, when the test ends
// (even on failure) and die with the test binary.
package kubetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/rest"

	"github.com/ducksnest/netd/internal/testutil"
)

// Binaries are the paths of the two server binaries.
type Binaries struct {
	APIServer string
	Etcd      string
}

// FindBinaries returns the binaries named by $KUBE_APISERVER and $ETCD or,
// failing that, builds (or finds cached) ones with scripts/kube-tools.sh.
func FindBinaries() (Binaries, error) {
	b := Binaries{APIServer: os.Getenv("KUBE_APISERVER"), Etcd: os.Getenv("ETCD")}
	if executable(b.APIServer) && executable(b.Etcd) {
		return b, nil
	}
	root, err := moduleRoot()
	if err != nil {
		return b, err
	}
	cmd := exec.Command("bash", filepath.Join(root, "scripts", "kube-tools.sh"))
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return b, fmt.Errorf("scripts/kube-tools.sh: %w: %s", err, testutil.Tail(stderr.String(), 5))
	}
	for _, l := range strings.Split(string(out), "\n") {
		if v, ok := strings.CutPrefix(l, "KUBE_APISERVER="); ok {
			b.APIServer = v
		}
		if v, ok := strings.CutPrefix(l, "ETCD="); ok {
			b.Etcd = v
		}
	}
	if !executable(b.APIServer) || !executable(b.Etcd) {
		return b, fmt.Errorf("scripts/kube-tools.sh printed no usable binaries: %q", out)
	}
	return b, nil
}

func executable(p string) bool {
	st, err := os.Stat(p)
	return err == nil && !st.IsDir() && st.Mode()&0o111 != 0
}

func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if b, err := os.ReadFile(filepath.Join(dir, "go.mod")); err == nil && bytes.Contains(b, []byte("module github.com/ducksnest/netd\n")) {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", errors.New("netd module root not found")
		}
		dir = parent
	}
}

// Server is a running etcd + kube-apiserver pair.
type Server struct {
	// Config reaches the API server as a cluster admin.
	Config *rest.Config
	// Kubeconfig is a kubeconfig file for Config.
	Kubeconfig string

	bin      Binaries
	dir      string
	etcd     *proc
	api      *proc
	apiArgs  []string
	apiPort  int
	token    string
	stopOnce bool
	crds     CRDs

	pkiMu    sync.Mutex
	pkiNodes []string
}

// CRDs chooses the Calico API a server serves.
type CRDs int

const (
	// CalicoV1 is a cluster with Calico's crd.projectcalico.org/v1 CRDs
	// only (no projectcalico.org/v3 served).
	CalicoV1 CRDs = iota
	// CalicoV3 is a cluster with Calico's native projectcalico.org/v3
	// CRDs (Calico 3.32+ without the aggregated API server).
	CalicoV3
)

// Start starts a server with the v1 CRDs for the test and stops it when
// the test ends. It skips the test if the binaries cannot be built (fails
// it with NETD_TEST_REQUIRE=all).
func Start(t testing.TB) *Server { return StartWith(t, CalicoV1) }

// StartWith is Start with the Calico CRDs of crds.
func StartWith(t testing.TB, crds CRDs) *Server {
	t.Helper()
	bin, err := FindBinaries()
	if err != nil {
		testutil.Skip(t, "kube-apiserver/etcd unavailable (run scripts/kube-tools.sh): %v", err)
	}
	s, err := NewWith(bin, t.TempDir(), crds)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(); err != nil {
			t.Error(err)
		}
	})
	return s
}

// New starts etcd and kube-apiserver with their state in dir and installs
// netd's RBAC rules and the Calico v1 CRDs. The caller must call Stop.
func New(bin Binaries, dir string) (*Server, error) { return NewWith(bin, dir, CalicoV1) }

// NewWith is New with the Calico CRDs of crds.
func NewWith(bin Binaries, dir string, crds CRDs) (_ *Server, err error) {
	s := &Server{bin: bin, dir: dir, crds: crds}
	defer func() {
		if err != nil {
			err = errors.Join(err, s.Stop())
		}
	}()
	etcdPort, peerPort, apiPort, err := freePorts()
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(etcdPort)
	peerURL := "http://127.0.0.1:" + strconv.Itoa(peerPort)
	etcd := exec.Command(bin.Etcd,
		"--name=kubetest", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=kubetest="+peerURL, "--unsafe-no-fsync",
		"--log-level=error")
	if s.etcd, err = s.start(etcd, "etcd"); err != nil {
		return nil, err
	}
	if err := s.etcd.poll(30*time.Second, func() error { return get(http.DefaultClient, etcdURL+"/health", "") }); err != nil {
		return nil, fmt.Errorf("etcd not healthy: %w (log %s)", err, filepath.Join(dir, "etcd.log"))
	}
	if err := s.writeAuth(); err != nil {
		return nil, err
	}
	if err := s.mkpki(); err != nil {
		return nil, err
	}
	s.apiPort = apiPort
	s.apiArgs = []string{
		"--etcd-servers=" + etcdURL,
		"--bind-address=127.0.0.1",
		// Never contacted; the endpoint reconciler rejects loopback.
		"--advertise-address=192.0.2.1", "--endpoint-reconciler-type=none",
		"--secure-port=" + strconv.Itoa(apiPort),
		"--cert-dir=" + filepath.Join(dir, "certs"),
		"--token-auth-file=" + filepath.Join(dir, "tokens.csv"),
		"--authorization-mode=Node,RBAC",
		"--service-cluster-ip-range=10.96.0.0/12",
		"--service-account-issuer=https://kubernetes.default.svc",
		"--service-account-key-file=" + filepath.Join(dir, "sa.pem"),
		"--service-account-signing-key-file=" + filepath.Join(dir, "sa.pem"),
		"--disable-admission-plugins=ServiceAccount",
		"--enable-priority-and-fairness=false",
		"--profiling=false",
		"--v=0",
	}
	s.apiArgs = append(s.apiArgs, s.pkiArgs()...)
	if err := s.StartAPIServer(); err != nil {
		return nil, err
	}
	s.Config = &rest.Config{
		Host: "https://127.0.0.1:" + strconv.Itoa(apiPort), BearerToken: s.token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             100, Burst: 200,
	}
	s.Kubeconfig = filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(s.Kubeconfig, []byte(fmt.Sprintf(kubeconfig, s.Config.Host, s.token)), 0o600); err != nil {
		return nil, err
	}
	if err := s.installCRDs(); err != nil {
		return nil, err
	}
	dyn, err := dynamic.NewForConfig(s.Config)
	if err != nil {
		return nil, err
	}
	if err := s.applyRBAC(dyn); err != nil {
		return nil, err
	}
	return s, nil
}

const kubeconfig = `apiVersion: v1
kind: Config
clusters:
- name: kubetest
  cluster: {server: %q, insecure-skip-tls-verify: true}
users:
- name: admin
  user: {token: %q}
contexts:
- name: kubetest
  context: {cluster: kubetest, user: admin}
current-context: kubetest
`

func (s *Server) writeAuth() error {
	tok := make([]byte, 16)
	if _, err := rand.Read(tok); err != nil {
		return err
	}
	s.token = hex.EncodeToString(tok)
	if err := os.WriteFile(filepath.Join(s.dir, "tokens.csv"), []byte(s.token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(s.dir, "sa.pem"), pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// proc is a started process and its reaper.
type proc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, once done
}

// start runs cmd with its output in DIR/name.log; the process dies with
// the test binary.
func (s *Server) start(cmd *exec.Cmd, name string) (*proc, error) {
	f, err := os.OpenFile(filepath.Join(s.dir, name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{cmd: cmd, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// poll is retry that gives up as soon as the process exits.
func (p *proc) poll(timeout time.Duration, f func() error) error {
	return retry(timeout, filepath.Base(p.cmd.Path), func() error {
		select {
		case <-p.done:
			return errPermanent{errExited{p.err}}
		default:
		}
		return f()
	})
}

// errPermanent ends retry at once.
type errPermanent struct{ err error }

func (e errPermanent) Error() string { return e.err.Error() }
func (e errPermanent) Unwrap() error { return e.err }

// retry calls f until it returns nil, an errPermanent, or timeout passes;
// the error names f's last error.
func retry(timeout time.Duration, what string, f func() error) error {
	var last error
	_, err := testutil.Wait(timeout, what, func() (bool, error) {
		last = f()
		var perm errPermanent
		if errors.As(last, &perm) {
			return false, perm.err
		}
		return last == nil, nil
	})
	if err != nil && last != nil && !errors.As(last, new(errPermanent)) {
		return fmt.Errorf("%w: %w", err, last)
	}
	return err
}

type errExited struct{ err error }

func (e errExited) Error() string { return fmt.Sprintf("process exited: %v", e.err) }

// StartAPIServer (re)starts kube-apiserver with the same flags and port,
// and waits until it is ready.
func (s *Server) StartAPIServer() error {
	if s.api != nil {
		return errors.New("kube-apiserver is already running")
	}
	api, err := s.start(exec.Command(s.bin.APIServer, s.apiArgs...), "kube-apiserver")
	if err != nil {
		return err
	}
	s.api = api
	insecure := &http.Client{Transport: &http.Transport{TLSClientConfig: insecureTLS()}, Timeout: 5 * time.Second}
	url := "https://127.0.0.1:" + strconv.Itoa(s.apiPort) + "/readyz"
	if err := api.poll(90*time.Second, func() error { return get(insecure, url, s.token) }); err != nil {
		return fmt.Errorf("kube-apiserver not ready: %w\n%s", err, testutil.TailFile(filepath.Join(s.dir, "kube-apiserver.log"), 20))
	}
	return nil
}

// StopAPIServer stops kube-apiserver (SIGTERM, SIGKILL after 5 s) and
// leaves etcd running.
func (s *Server) StopAPIServer() error {
	if s.api == nil {
		return nil
	}
	err := stop(s.api)
	s.api = nil
	return err
}

// Stop stops the API server, then etcd.
func (s *Server) Stop() error {
	if s.stopOnce {
		return nil
	}
	s.stopOnce = true
	err := s.StopAPIServer()
	if s.etcd != nil {
		err = errors.Join(err, stop(s.etcd))
		s.etcd = nil
	}
	return err
}

// stop ends one process by PID and waits until it is reaped: SIGTERM,
// then SIGKILL after 5 s (kube-apiserver drains open watches for much
// longer; a test gains nothing from waiting).
func stop(p *proc) error {
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return fmt.Errorf("stopping %s (pid %d): %w", filepath.Base(p.cmd.Path), p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
	return nil
}

// freePorts returns three free TCP ports on 127.0.0.1.
func freePorts() (int, int, int, error) {
	var ports [3]int
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	for i := range ports {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, 0, 0, err
		}
		ls = append(ls, l)
		ports[i] = l.Addr().(*net.TCPAddr).Port
	}
	return ports[0], ports[1], ports[2], nil
}

func get(c *http.Client, url, token string) error {
	req, err := http.NewRequestWithContext(context.Background(), http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return nil
}
