package e2e

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/netd/lab"
)

// needBin skips (fails with NETD_TEST_REQUIRE=all) when a daemon of the
// interop packages is missing (scripts/interop-deps.sh installs them; CI
// runs it).
func needBin(t *testing.T, paths ...string) {
	t.Helper()
	for _, p := range paths {
		testutil.NeedBinary(t, p, "run scripts/interop-deps.sh")
	}
}

// startBIRD runs bird in router r's namespace with config conf, its
// control socket in a temp dir; it is stopped by pid at cleanup.
func startBIRD(t *testing.T, l *lab.Lab, r *lab.Router, conf string) (birdc func(args ...string) string) {
	t.Helper()
	return startBIRDKey(t, l, r, conf, "bird-"+r.Name)
}

// startBIRDKey is startBIRD with the process key given.
func startBIRDKey(t *testing.T, l *lab.Lab, r *lab.Router, conf, key string) (birdc func(args ...string) string) {
	t.Helper()
	needBin(t, "bird", "birdc")
	dir := t.TempDir()
	cfg := filepath.Join(dir, "bird.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "bird.ctl")
	if _, err := l.Spawn(key, r.NS, filepath.Join(dir, "bird.log"), "bird", "-f", "-c", cfg, "-s", sock, "-P", filepath.Join(dir, "bird.pid")); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(dir, "bird.log"))
			t.Logf("--- bird log of %s:\n%s", r.Name, b)
		}
		_ = l.StopProc(t.Context(), key, 5*time.Second)
	})
	return func(args ...string) string {
		out, err := exec.Command("birdc", append([]string{"-s", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Logf("birdc %v: %v", args, err)
		}
		return string(out)
	}
}

// startFRR runs FRR's zebra, bgpd and (if bfdConf is not empty) bfdd in
// router r's namespace with their own config, pid and socket files; they
// are stopped by pid at cleanup. It returns a vtysh runner.
func startFRR(t *testing.T, l *lab.Lab, r *lab.Router, bgpConf, bfdConf string) (vtysh func(cmds ...string) string) {
	t.Helper()
	needBin(t, "/usr/lib/frr/zebra", "/usr/lib/frr/bgpd", "/usr/lib/frr/bfdd", "vtysh")
	// The daemons drop privileges to frr:frr, who must reach the dir (the
	// test's TempDir sits in a 0700 parent).
	dir, err := os.MkdirTemp("", "netd-frr-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	daemons := []struct{ name, conf string }{{"zebra", "hostname " + r.Name + "\n"}, {"bgpd", bgpConf}}
	if bfdConf != "" {
		daemons = append(daemons, struct{ name, conf string }{"bfdd", bfdConf})
	}
	for _, d := range daemons {
		cfg := filepath.Join(dir, d.name+".conf")
		if err := os.WriteFile(cfg, []byte(d.conf), 0o644); err != nil {
			t.Fatal(err)
		}
		args := []string{"/usr/lib/frr/" + d.name, "-z", filepath.Join(dir, "zserv.api"), "-i", filepath.Join(dir, d.name+".pid"),
			"--vty_socket", dir, "-f", cfg, "-u", "frr", "-g", "frr", "-A", "127.0.0.1", "-P", "0", "--log", "stdout"}
		if d.name == "bfdd" {
			args = append(args, "--bfdctl", filepath.Join(dir, "bfdd.sock"))
		}
		key := fmt.Sprintf("frr-%s-%s", r.Name, d.name)
		if _, err := l.Spawn(key, r.NS, filepath.Join(dir, d.name+".log"), args...); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = l.StopProc(t.Context(), key, 5*time.Second) })
		if d.name == "zebra" {
			testutil.Poll(t, 10*time.Second, "zebra socket", func() (bool, error) {
				_, err := os.Stat(filepath.Join(dir, "zserv.api"))
				return err == nil, nil
			})
		}
	}
	t.Cleanup(func() {
		if t.Failed() {
			for _, d := range daemons {
				b, _ := os.ReadFile(filepath.Join(dir, d.name+".log"))
				t.Logf("--- %s log of %s:\n%s", d.name, r.Name, testutil.Tail(string(b), 30))
			}
		}
	})
	return func(cmds ...string) string {
		args := []string{"netns", "exec", r.NS, "vtysh", "--vty_socket", dir}
		for _, c := range cmds {
			args = append(args, "-c", c)
		}
		out, _ := exec.Command("ip", args...).CombinedOutput()
		return string(out)
	}
}

func execCombined(name string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	return string(out), err
}
