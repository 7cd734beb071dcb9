package main

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/ducksnest/netd/netd/bfd"
	"github.com/ducksnest/netd/netd/daemon"
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
