package e2e

import (
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/netd/lab/chaos"
)

// ciChaosClasses are the fault classes the CI seed draws from: those whose
// budget main meets. The silent failures (sigstop-short, sigstop-long,
// lan-flap, overlay-flap) cost the pod pairs more than the 1 s detection
// budget today (see the soak table in the README); the soak command runs
// them.
var ciChaosClasses = []chaos.Class{chaos.Kill9, chaos.SigtermGraceful, chaos.SigtermWithdraw, chaos.Netem, chaos.ReloadValid, chaos.ReloadBroken, chaos.PeerFlap}

// TestChaosSeed runs the chaos soak (netd lab chaos) for a short fixed
// seed: a broken policy reload, a lossy overlay link, kill -9, a SIGTERM
// restart in withdraw mode, another broken reload and (if the 35 s allow)
// the external peer flapping while it announces what netd must refuse;
// all the while every pod pings every other pod every 20 ms. After each fault every node's table must be exactly what the
// policy calls for, the planted foreign routes untouched and every
// session back; no budgeted pod pair may lose a packet.
func TestChaosSeed(t *testing.T) {
	needBin(t, "gobgpd", "gobgp")
	l := upLab(t)
	log := slog.New(slog.NewTextHandler(logWriter{t}, &slog.HandlerOptions{Level: slog.LevelInfo}))
	const seed = 17
	rep, err := chaos.Run(t.Context(), l, chaos.Config{Seed: seed, Duration: 35 * time.Second, Classes: ciChaosClasses,
		GapMin: time.Second, GapMax: 2 * time.Second, Interval: 20 * time.Millisecond, SettleTimeout: 90 * time.Second,
		Dir: t.TempDir(), Compile: compilePolicy, Logger: log})
	if rep != nil {
		var b strings.Builder
		rep.Print(&b)
		t.Logf("chaos report:\n%s", b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	// It did run: faults of several classes and probes between every pair.
	if len(rep.Results) < 4 || len(rep.Rows) < 3 || rep.Sent < 10000 || rep.Pairs != len(l.AllPods())*(len(l.AllPods())-1) {
		t.Errorf("the soak ran %d faults in %d classes, sent %d requests between %d pairs", len(rep.Results), len(rep.Rows), rep.Sent, rep.Pairs)
	}
	for _, v := range rep.Violations {
		t.Error(v)
	}
}
