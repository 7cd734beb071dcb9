package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"net/netip"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"

	"github.com/ducksnest/netd/netd/doctor"
	"github.com/ducksnest/netd/netd/lab"
	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
)

// needFirewallTools installs Debian's iptables and nftables when
// iptables-save or nft is missing (the doctor reads the firewall with
// them, and the tests inject rules with them).
func needFirewallTools(t *testing.T) {
	t.Helper()
	_, e1 := exec.LookPath("iptables-restore")
	_, e2 := exec.LookPath("nft")
	if e1 == nil && e2 == nil {
		return
	}
	if _, err := exec.LookPath("apt-get"); err != nil {
		testutil.Skip(t, "needs iptables and nftables (apt install iptables nftables)")
	}
	for _, args := range [][]string{{"update", "-qq"}, {"install", "-y", "-qq", "iptables", "nftables"}} {
		cmd := exec.CommandContext(t.Context(), "apt-get", args...)
		cmd.Env = append(os.Environ(), "DEBIAN_FRONTEND=noninteractive")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("apt-get %v: %v\n%s", args, err, out)
		}
	}
}

// withoutExternalPeers drops the example's home router, which no lab runs
// (a clean lab then has no session that cannot come up).
func withoutExternalPeers(t *testing.T, data []byte) []byte {
	t.Helper()
	re := regexp.MustCompile(`(?s)\n    externalPeers:.*?import: \[\]\n`)
	if !re.Match(data) {
		t.Fatal("the example policy has no externalPeers block")
	}
	return re.ReplaceAll(data, []byte("\n"))
}

// compilePolicy compiles policy text (the CLI's compileSource; the chaos
// soak takes it as its compiler).
func compilePolicy(name string, data []byte) (*desired.State, error) {
	f, err := policy.Load(name, data)
	if err != nil {
		return nil, err
	}
	return policy.Compile(f)
}

// policyState compiles policy text; name is the file errors point into.
func policyState(t *testing.T, name string, data []byte) *desired.State {
	t.Helper()
	st, err := compilePolicy(name, data)
	if err != nil {
		t.Fatal(err)
	}
	return st
}

// runDoctor runs `netd doctor -o json` in node's namespace, as an operator
// would on the node, and returns its report and exit status.
func runDoctor(t *testing.T, l *lab.Lab, node string, extra ...string) (*doctor.Report, int) {
	t.Helper()
	n, err := l.Node(node)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"netns", "exec", n.NS, netdBin, "doctor", "--policy", l.PolicyPath, "--node", node,
		"--netd-socket", n.Socket, "--tailscale-socket=", "-o", "json"}, extra...)
	cmd := exec.CommandContext(t.Context(), "ip", args...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err = cmd.Run()
	code := 0
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		code = ee.ExitCode()
	case err != nil:
		t.Fatalf("netd doctor: %v", err)
	}
	if code == 2 {
		t.Fatalf("netd doctor: usage error: %s", stderr.String())
	}
	var rep doctor.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("netd doctor -o json (exit %d): %v\n%s\n%s", code, err, stdout.String(), stderr.String())
	}
	return &rep, code
}

// wantFinding asserts that the report has finding id with result and
// evidence containing each of ev, and logs it.
func wantFinding(t *testing.T, rep *doctor.Report, code int, id string, result doctor.Result, ev ...string) {
	t.Helper()
	for _, f := range rep.Findings {
		if f.ID != id {
			continue
		}
		all := strings.Join(f.Evidence, "\n")
		t.Logf("%s %s: %s\n  %s", strings.ToUpper(string(f.Result)), f.ID, f.Summary, strings.Join(f.Evidence, "\n  "))
		if f.Result != result {
			t.Errorf("%s: %s, want %s", id, f.Result, result)
		}
		for _, e := range ev {
			if !strings.Contains(all, e) {
				t.Errorf("%s: evidence lacks %q", id, e)
			}
		}
		if want := map[doctor.Result]int{doctor.Fail: 1}[rep.Result]; code != want {
			t.Errorf("exit %d with result %s, want %d", code, rep.Result, want)
		}
		return
	}
	t.Errorf("no finding %s in %d findings", id, len(rep.Findings))
}

// nsRun runs a command in namespace ns; undo (if any) runs at cleanup even
// if the test fails, so that each subtest leaves the lab as it found it.
func nsRun(t *testing.T, ns string, cmd string, undo string) {
	t.Helper()
	if undo != "" {
		t.Cleanup(func() {
			if out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, strings.Fields(undo)...)...).CombinedOutput(); err != nil {
				t.Errorf("undo %q in %s: %v: %s", undo, ns, err, out)
			}
		})
	}
	if out, err := exec.CommandContext(t.Context(), "ip", append([]string{"netns", "exec", ns}, strings.Fields(cmd)...)...).CombinedOutput(); err != nil {
		t.Fatalf("%q in %s: %v: %s", cmd, ns, err, out)
	}
}

// iptablesRestore loads rules (iptables-save format) into ns, adding to
// what is there; the namespace's whole ruleset is flushed at cleanup (the
// lab itself has no firewall).
func iptablesRestore(t *testing.T, ns string, rules []byte) {
	t.Helper()
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "flush", "ruleset").CombinedOutput(); err != nil {
			t.Errorf("flushing the ruleset of %s: %v: %s", ns, err, out)
		}
	})
	cmd := exec.CommandContext(t.Context(), "ip", "netns", "exec", ns, "iptables-restore", "--noflush")
	cmd.Stdin = bytes.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore in %s: %v: %s", ns, err, out)
	}
}

// skewedClock answers ICMP timestamp requests in ns with a clock off by
// skew, standing in for a peer whose clock is wrong (a namespace cannot
// have its own wall clock). The kernel's own replies are dropped by an
// OUTPUT rule that spares packets marked 0x1, which this responder's are.
func skewedClock(t *testing.T, ns string, skew time.Duration) {
	t.Helper()
	iptablesRestore(t, ns, []byte("*filter\n-A OUTPUT -p icmp -m icmp --icmp-type 14 -m mark ! --mark 0x1/0x1 -j DROP\nCOMMIT\n"))
	var fd int
	if err := lab.InNS(ns, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMP)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_MARK, 1); err != nil {
		t.Fatal(err)
	}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100_000}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait(); unix.Close(fd) })
	wg.Go(func() {
		buf := make([]byte, 1500)
		for ctx.Err() == nil {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil || n < 20 {
				continue
			}
			hl := int(buf[0]&0x0f) * 4
			p := buf[hl:n]
			if len(p) < 20 || p[0] != byte(ipv4.ICMPTypeTimestamp) {
				continue
			}
			now := time.Now().Add(skew).UTC()
			ms := uint32(now.Sub(time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)) / time.Millisecond)
			body := make([]byte, 16)
			copy(body, p[4:12]) // id, seq, originate
			binary.BigEndian.PutUint32(body[8:], ms)
			binary.BigEndian.PutUint32(body[12:], ms)
			reply, err := (&icmp.Message{Type: ipv4.ICMPTypeTimestampReply, Body: &icmp.RawBody{Data: body}}).Marshal(nil)
			if err == nil {
				_ = unix.Sendto(fd, reply, 0, from)
			}
		}
	})
}

// dialFrom opens a TCP connection from src to dst inside ns, within d.
func dialFrom(ns string, src, dst netip.AddrPort, d time.Duration) error {
	return lab.InNS(ns, func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, 0)
		if err != nil {
			return err
		}
		defer unix.Close(fd)
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.Addr().As4()}); err != nil {
			return err
		}
		err = unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.Addr().As4(), Port: int(dst.Port())})
		if err != nil && !errors.Is(err, unix.EINPROGRESS) {
			return err
		}
		pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
		n, err := unix.Poll(pfd, int(d/time.Millisecond))
		for errors.Is(err, unix.EINTR) {
			n, err = unix.Poll(pfd, int(d/time.Millisecond))
		}
		if err != nil {
			return err
		}
		if n == 0 {
			return errors.New("connect timed out")
		}
		soerr, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
		if err != nil {
			return err
		}
		if soerr != 0 {
			return unix.Errno(soerr)
		}
		return nil
	})
}

// wantSkew checks that finding id estimates the peer's clock offset as
// want within tol ("peer clock +1m29.998s against ours").
func wantSkew(t *testing.T, rep *doctor.Report, id string, want, tol time.Duration) {
	t.Helper()
	re := regexp.MustCompile(`peer clock ([+-][0-9a-zµ.]+) against ours`)
	for _, f := range rep.Findings {
		if f.ID != id {
			continue
		}
		m := re.FindStringSubmatch(strings.Join(f.Evidence, "\n"))
		if m == nil {
			t.Fatalf("%s: no clock offset in %q", id, f.Evidence)
		}
		got, err := time.ParseDuration(strings.TrimPrefix(m[1], "+"))
		if err != nil {
			t.Fatalf("%s: offset %q: %v", id, m[1], err)
		}
		if d := got - want; d < -tol || d > tol {
			t.Errorf("%s: offset %v, want %v ± %v", id, got, want, tol)
		}
		return
	}
	t.Errorf("no finding %s", id)
}
