package calico

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/ducksnest/netd/netd/kube"
)

const rssChildEnv = "NETD_CALICO_RSS_CHILD"

// TestWatchRSS measures the resident memory of a process that does what
// netd adds for Calico: the BlockAffinity watch (and its clients), idle,
// after the first sync, with 50 affinities in the cluster. It re-runs the
// test binary as that process.
func TestWatchRSS(t *testing.T) {
	s := server(t)
	c := clients(t, s)
	for i := range 50 {
		addAffinity(t, c, fmt.Sprintf("node-%d", i%5), fmt.Sprintf("10.244.%d.0/26", i), "confirmed")
	}
	for _, mode := range []string{"-", s.Kubeconfig} {
		cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), rssChildEnv+"="+mode, "GOMEMLIMIT=", "GOGC=")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			t.Fatalf("child: %v\n%s", err, out.String())
		}
		what := "idle process with the BlockAffinity watch (50 objects)"
		if mode == "-" {
			what = "same binary, no watch (baseline)"
		}
		t.Logf("%s: %s", what, strings.TrimSpace(out.String()))
	}
}

// rssChild runs an AffinitySource until synced and idle, then prints its
// memory. It returns the exit code.
func rssChild(kubeconfig string) int {
	if kubeconfig == "-" {
		fmt.Println(memory())
		return 0
	}
	cfg, err := kube.LoadConfig(kubeconfig)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	c, err := kube.NewClient(cfg)
	if err != nil {
		fmt.Println(err)
		return 1
	}
	src, err := NewAffinitySource(c.Dynamic, BlockAffinities, "node-1", slog.New(slog.DiscardHandler), prometheus.NewRegistry())
	if err != nil {
		fmt.Println(err)
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	go func() { _ = src.Run(ctx) }()
	if err := src.WaitSynced(ctx); err != nil {
		fmt.Println(err)
		return 1
	}
	// Idle: let the watch settle for a second, then return freed memory.
	idle := time.NewTimer(time.Second)
	<-idle.C
	fmt.Printf("%s, blocks of node-1 %d\n", memory(), len(src.Blocks("node-1")))
	return 0
}

func memory() string {
	runtime.GC()
	debug.FreeOSMemory()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	status, _ := os.ReadFile("/proc/self/status")
	rss := ""
	for _, l := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			rss = strings.Join(strings.Fields(l)[1:], " ")
		}
	}
	return fmt.Sprintf("VmRSS %s, heap in use %d KiB", rss, ms.HeapInuse/1024)
}
