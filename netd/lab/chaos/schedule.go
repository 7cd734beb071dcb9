package chaos

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"time"
)

// Class is a kind of fault.
type Class string

// The fault classes, in the order the report lists them.
const (
	Kill9           Class = "kill9"              // SIGKILL netd, start it again
	SigtermGraceful Class = "sigterm-graceful"   // SIGTERM in graceful stop mode, start again
	SigtermWithdraw Class = "sigterm-withdraw"   // SIGTERM in withdraw stop mode, start again
	StopShort       Class = "sigstop-short"      // SIGSTOP shorter than the hold time, SIGCONT
	StopLong        Class = "sigstop-long"       // SIGSTOP longer than the hold time, SIGCONT
	LANFlap         Class = "lan-flap"           // a node's LAN port down, then up
	OverlayFlap     Class = "overlay-flap"       // a node's overlay port down, then up
	Netem           Class = "lossy-link"         // loss (and, with netem, delay) on a node's overlay link
	ReloadValid     Class = "reload-valid"       // a valid policy change
	ReloadBroken    Class = "reload-broken"      // a broken policy file, then the good one back
	PeerFlap        Class = "peer-flap"          // the external BGP peer killed and restarted, announcing what it must not
	TailscaledRest  Class = "tailscaled-restart" // a node's tailscaled restarted (tailnet overlay only)
	APIRestart      Class = "apiserver-restart"  // the kube-apiserver stopped 2-6 s, started again (--kube only)
	AffinityChurn   Class = "affinity-churn"     // a BlockAffinity added for a node, then removed (--kube only)
)

// AllClasses lists every class.
var AllClasses = []Class{Kill9, SigtermGraceful, SigtermWithdraw, StopShort, StopLong, LANFlap, OverlayFlap, Netem, ReloadValid, ReloadBroken, PeerFlap, TailscaledRest, APIRestart, AffinityChurn}

// ParseClasses parses a comma-separated list of classes ("all" or empty:
// every class).
func ParseClasses(s string) ([]Class, error) {
	if s == "" || s == "all" {
		return slices.Clone(AllClasses), nil
	}
	var out []Class
	for _, f := range strings.Split(s, ",") {
		c := Class(strings.TrimSpace(f))
		if !slices.Contains(AllClasses, c) {
			return nil, fmt.Errorf("unknown fault class %q (one of %v)", c, AllClasses)
		}
		out = append(out, c)
	}
	return out, nil
}

// perNode reports whether the class acts on one node's netd or links.
func (c Class) perNode() bool {
	switch c {
	case ReloadValid, ReloadBroken, PeerFlap, APIRestart:
		return false
	}
	return true
}

// Fault is one scheduled fault.
type Fault struct {
	Index int           `json:"index"`
	Class Class         `json:"class"`
	Node  string        `json:"node,omitempty"`
	Gap   time.Duration `json:"gap"`            // quiet time before it
	Hold  time.Duration `json:"hold,omitempty"` // how long a freeze, cut or degradation lasts
	Loss  int           `json:"lossPercent,omitempty"`
	Delay time.Duration `json:"delay,omitempty"`
	Kill  bool          `json:"kill,omitempty"` // peer-flap: SIGKILL rather than SIGTERM
}

func (f Fault) String() string {
	s := fmt.Sprintf("#%d %s", f.Index, f.Class)
	if f.Node != "" {
		s += " on " + f.Node
	}
	switch f.Class {
	case StopShort, StopLong, LANFlap, OverlayFlap, APIRestart:
		s += fmt.Sprintf(" for %v", f.Hold.Round(time.Millisecond))
	case Netem:
		s += fmt.Sprintf(" (%d%% loss, %v delay) for %v", f.Loss, f.Delay.Round(time.Millisecond), f.Hold.Round(time.Millisecond))
	case PeerFlap:
		if f.Kill {
			s += " (SIGKILL)"
		} else {
			s += " (SIGTERM)"
		}
	}
	return s
}

// Timing bounds the random durations of a schedule.
type Timing struct {
	GapMin, GapMax time.Duration
	// HoldTime is the BGP hold time: sigstop-short freezes for less,
	// sigstop-long for more.
	HoldTime time.Duration
}

// Schedule returns the first n faults of the sequence the seed makes.
// Every fault draws the same number of random values whatever its class,
// so a seed always gives the same sequence. nodes are every node; lanNodes
// those with a LAN (for lan-flap).
func Schedule(seed uint64, n int, classes []Class, nodes, lanNodes []string, t Timing) []Fault {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	between := func(lo, hi time.Duration) time.Duration {
		if hi <= lo {
			return lo
		}
		return lo + time.Duration(r.Int64N(int64(hi-lo)))
	}
	var out []Fault
	for i := range n {
		c := classes[r.IntN(len(classes))]
		nodeDraw, lanDraw := r.IntN(len(nodes)), r.IntN(max(len(lanNodes), 1))
		f := Fault{Index: i + 1, Class: c, Gap: between(t.GapMin, t.GapMax)}
		freezeShort := between(1500*time.Millisecond, t.HoldTime/2)
		freezeLong := between(t.HoldTime+2*time.Second, t.HoldTime+6*time.Second)
		cut := between(2*time.Second, 6*time.Second)
		f.Loss, f.Delay = 1+r.IntN(5), between(5*time.Millisecond, 40*time.Millisecond)
		f.Kill = r.IntN(2) == 0
		if c.perNode() {
			f.Node = nodes[nodeDraw]
		}
		switch c {
		case StopShort:
			f.Hold = freezeShort
		case StopLong:
			f.Hold = freezeLong
		case LANFlap:
			if len(lanNodes) == 0 {
				f.Class, f.Node = OverlayFlap, nodes[nodeDraw]
			} else {
				f.Node = lanNodes[lanDraw]
			}
			f.Hold = cut
		case OverlayFlap, Netem, APIRestart:
			f.Hold = cut
		}
		if f.Class != Netem {
			f.Loss, f.Delay = 0, 0
		}
		if f.Class != PeerFlap {
			f.Kill = false
		}
		out = append(out, f)
	}
	return out
}

// nextMode returns the stop mode (graceful or withdraw) that node's netd
// should run in after fault i: the one its next SIGTERM fault needs.
func nextMode(faults []Fault, i int, node string) string {
	for _, f := range faults[i+1:] {
		if f.Node != node {
			continue
		}
		switch f.Class {
		case SigtermGraceful:
			return "graceful"
		case SigtermWithdraw:
			return "withdraw"
		}
	}
	return "graceful"
}
