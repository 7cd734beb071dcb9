package e2e

// The helpers of the tailnet lab's tests: the pinned Tailscale and
// headscale binaries (every tailnet test), and TestTailnet's policy
// without the pod grant and its bulk transfer between nodes.

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/policy/acldoc"
	"github.com/ducksnest/netd/policy/desired"
)

// tailscaleTools returns the pinned tailscaled, tailscale and headscale
// binaries: from TAILSCALED/TAILSCALE/HEADSCALE, or built (once, cached by
// version outside the repo) by scripts/tailscale-tools.sh.
func tailscaleTools(t *testing.T) lab.TailnetConfig {
	t.Helper()
	env := map[string]string{"TAILSCALED": os.Getenv("TAILSCALED"), "TAILSCALE": os.Getenv("TAILSCALE"), "HEADSCALE": os.Getenv("HEADSCALE")}
	if env["TAILSCALED"] == "" || env["TAILSCALE"] == "" || env["HEADSCALE"] == "" {
		out, err := exec.Command("bash", filepath.Join("..", "scripts", "tailscale-tools.sh")).Output()
		if err != nil {
			var ee *exec.ExitError
			if errors.As(err, &ee) {
				t.Fatalf("scripts/tailscale-tools.sh: %v\n%s", err, ee.Stderr)
			}
			t.Fatal(err)
		}
		sc := bufio.NewScanner(bytes.NewReader(out))
		for sc.Scan() {
			if k, v, ok := strings.Cut(sc.Text(), "="); ok {
				env[k] = v
			}
		}
	}
	return lab.TailnetConfig{TailscaledBin: env["TAILSCALED"], TailscaleBin: env["TAILSCALE"], HeadscaleBin: env["HEADSCALE"],
		UserRoutes: []netip.Prefix{netip.MustParsePrefix("192.168.77.0/24")}}
}

// withoutPodGrant drops the generated pod-traffic grant and the tests that
// need it, and returns the policy as the compiler would have built it.
func withoutPodGrant(t *testing.T, doc []byte) *desired.Tailnet {
	t.Helper()
	p, err := acldoc.Parse(doc)
	if err != nil {
		t.Fatal(err)
	}
	var gs []acldoc.Grant
	for _, g := range p.Grants {
		if len(g.Dst) == 1 && g.Dst[0] == "pods" && len(g.IP) == 1 && g.IP[0] == "*" {
			continue
		}
		gs = append(gs, g)
	}
	var ts []acldoc.Test
	for _, x := range p.Tests {
		if !strings.Contains(strings.Join(x.Accept, " "), "10.244.") {
			ts = append(ts, x)
		}
	}
	if len(gs) == len(p.Grants) {
		t.Fatal("no pod grant")
	}
	p.Grants, p.Tests, p.Generated = gs, ts, nil
	out, err := acldoc.Render(p, []string{"e2e: the compiled policy without the pod-traffic grant"})
	if err != nil {
		t.Fatal(err)
	}
	tn, err := acldoc.Desired(out)
	if err != nil {
		t.Fatal(err)
	}
	return &tn
}

// nodeBulk echoes n bytes from node a to node b over tailscale0, on the
// kubelet port (the policy lets nodes reach it), and returns the time.
func nodeBulk(ctx context.Context, a, b *lab.Node, n int) (time.Duration, error) {
	var ln net.Listener
	err := lab.InNS(b.NS, func() error {
		var err error
		ln, err = net.Listen("tcp4", netip.AddrPortFrom(b.OverlayAddr, 10250).String())
		return err
	})
	if err != nil {
		return 0, fmt.Errorf("listening on %s: %w", b.OverlayAddr, err)
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	defer ln.Close()
	wg.Add(1)
	go func() {
		defer wg.Done()
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(2 * time.Minute))
		_, _ = io.Copy(c, c)
	}()
	payload := make([]byte, n)
	_, _ = rand.Read(payload)
	return lab.TCPEcho(ctx, lab.Pod{NS: a.NS, Addr: a.OverlayAddr}, netip.AddrPortFrom(b.OverlayAddr, 10250), payload, 2*time.Minute)
}
