package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/netd/bfd"
	"github.com/ducksnest/netd/netd/daemon"
	"github.com/ducksnest/netd/netd/tailnetsync"
)

// TestPrintBFD: the text status shows every BFD session with its state,
// history and both ends' timers, and a session that never came up as a
// warning with its reason; without BFD it says so.
func TestPrintBFD(t *testing.T) {
	ms := func(n int) bfd.Duration { return bfd.Duration(time.Duration(n) * time.Millisecond) }
	b := &daemon.BFDStatus{Interval: "100ms", Multiplier: 5, Peers: []daemon.BFDPeer{
		{Name: "ultra", PeerState: bfd.PeerState{
			Peer: netip.MustParseAddr("100.64.0.2"), State: "up", Admitted: true, EverUp: true, Changes: 2,
			LastChange: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC),
			Local:      bfd.Timers{DesiredMinTx: ms(100), RequiredMinRx: ms(100), Multiplier: 5},
			Remote:     bfd.Timers{DesiredMinTx: ms(300), RequiredMinRx: ms(300), Multiplier: 3},
		}},
		{Name: "old", PeerState: bfd.PeerState{
			Peer: netip.MustParseAddr("100.64.0.3"), State: "down",
			Local:   bfd.Timers{DesiredMinTx: ms(1000), RequiredMinRx: ms(100), Multiplier: 5},
			Warning: "no BFD packets received from 100.64.0.3 for 30s: is UDP 3784 allowed on the tailnet?",
		}},
	}}
	var out bytes.Buffer
	printBFD(&out, b)
	got := out.String()
	for _, want := range []string{
		"BFD  interval 100ms  multiplier 5",
		"ultra  100.64.0.2  up",
		"03:04:05",
		"100ms/100ms x5",
		"300ms/300ms x3",
		"old    100.64.0.3  down   false     false    0",
		"WARNING bfd old: no BFD packets received from 100.64.0.3 for 30s: is UDP 3784 allowed on the tailnet?",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	if strings.Count(got, "WARNING") != 1 {
		t.Errorf("want one warning:\n%s", got)
	}
	out.Reset()
	printBFD(&out, nil)
	if !strings.Contains(out.String(), "BFD  off") {
		t.Errorf("without BFD: %q", out.String())
	}
}

// TestPrintTailnetPolicy: the writer's section shows its role, sync state,
// drift with the diff, why the file is not applied and the pod blocks not
// approved; a standby shows who writes; drift makes `netd status` exit 1.
func TestPrintTailnetPolicy(t *testing.T) {
	w := &tailnetsync.Status{Mode: "policy (spec.tailnetSync.writer)", Writer: "control-plane", Leading: true,
		Target: "headscale at http://hs:8080", Interval: "1m0s", Version: "2026-12-05T08:00:00Z", Digest: "sha256:0123456789abcdef0123",
		Drift: "the live policy was edited after netd applied it", DriftDiff: "--- live\n+++ desired\n-\"tag:k8s-node:2222\"\n",
		Blocked: "the live policy was edited outside netd", Writes: 2,
		RouteProblems: []tailnetsync.RouteProblem{{Node: "old", Unapproved: []netip.Prefix{netip.MustParsePrefix("10.244.4.0/24")}}}}
	var out bytes.Buffer
	printTailnetPolicy(&out, w)
	got := out.String()
	for _, want := range []string{
		"tailnet policy: WRITER on headscale at http://hs:8080; writer control-plane (policy (spec.tailnetSync.writer)), ownership shared, re-check every 1m0s",
		"in sync=false  version 2026-12-05T08:00:00Z  digest sha256:0123456789ab  writes 2",
		"DRIFT since -: the live policy was edited after netd applied it",
		"    -\"tag:k8s-node:2222\"",
		"NOT APPLIED: the live policy was edited outside netd",
		"POD ROUTES: old: not approved [10.244.4.0/24]",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("status lacks %q:\n%s", want, got)
		}
	}
	if !tailnetPolicyDrift(w) {
		t.Error("drift on the writer must make netd status exit 1")
	}
	out.Reset()
	standby := &tailnetsync.Status{Mode: "lease kube-system/netd-tailnet", Writer: "firebat", Target: "tailscale tailnet - at https://api.tailscale.com", Exclusive: true, Interval: "1m0s"}
	printTailnetPolicy(&out, standby)
	if got := out.String(); !strings.Contains(got, "tailnet policy: standby on tailscale tailnet -") || !strings.Contains(got, "writer firebat (lease kube-system/netd-tailnet), ownership exclusive") || strings.Contains(got, "in sync") {
		t.Errorf("standby:\n%s", got)
	}
	if tailnetPolicyDrift(standby) {
		t.Error("a standby reports no drift of its own")
	}
}
