package bgp

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"

	"github.com/ducksnest/netd/bgp/bgptest"
	"github.com/ducksnest/netd/internal/testutil"
	"github.com/ducksnest/netd/policy/desired"
)

// TestScripts runs the txtar scenarios in testdata: netd speakers and plain
// GoBGP routers on loopback addresses $ADDR_a ... $ADDR_f, $ADDR_x, $ADDR_y.
//
//	speaker NAME CONFIG.json [OWN-PREFIX...]  start (once) and Reconcile;
//	                                           the JSON is a desired.Speaker
//	                                           with $VARS expanded; ASN,
//	                                           addresses, timers default
//	router NAME ASN                            start a plain GoBGP router
//	neighbor ROUTER PEER-NAME ASN [gr]         configure a router's session
//	announce|withdraw ROUTER PREFIX...
//	learned [-wait FILE] NAME                  print (or wait for) Learned
//	rejected NAME                              print rejected counts
//	stop [-graceful] NAME
func TestScripts(t *testing.T) {
	names := []string{"a", "b", "c", "d", "e", "f", "x", "y"}
	testscript.Run(t, testscript.Params{
		Dir: "testdata",
		Setup: func(env *testscript.Env) error {
			addrs := bgptest.Addrs(envT{env}, len(names))
			st := &scriptState{addrs: map[string]netip.Addr{}, speakers: map[string]*Speaker{}, routers: map[string]*bgptest.Peer{}}
			for i, n := range names {
				st.addrs[n] = addrs[i]
				env.Setenv("ADDR_"+n, addrs[i].String())
			}
			f, err := os.Create(filepath.Join(env.WorkDir, "speakers.log"))
			if err != nil {
				return err
			}
			st.log = slog.New(slog.NewTextHandler(f, nil))
			env.Values["state"] = st
			env.Defer(func() {
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				defer cancel()
				for _, s := range st.speakers {
					_ = s.Stop(ctx, false)
				}
				f.Close()
			})
			return nil
		},
		Cmds: map[string]func(*testscript.TestScript, bool, []string){
			"speaker":  cmdSpeaker,
			"router":   cmdRouter,
			"neighbor": cmdNeighbor,
			"announce": func(ts *testscript.TestScript, _ bool, args []string) { cmdPaths(ts, args, false) },
			"withdraw": func(ts *testscript.TestScript, _ bool, args []string) { cmdPaths(ts, args, true) },
			"learned":  cmdLearned,
			"rejected": cmdRejected,
			"stop":     cmdStop,
		},
	})
}

type scriptState struct {
	addrs    map[string]netip.Addr
	speakers map[string]*Speaker
	routers  map[string]*bgptest.Peer
	log      *slog.Logger
}

func scriptStateOf(ts *testscript.TestScript) *scriptState { return ts.Value("state").(*scriptState) }

// envT and scriptT adapt testscript to bgptest.T.
type envT struct{ env *testscript.Env }

func (e envT) Helper()                   {}
func (e envT) Fatalf(f string, a ...any) { e.env.T().Fatal(fmt.Sprintf(f, a...)) }
func (e envT) Cleanup(f func())          { e.env.Defer(f) }
func (e envT) Logf(f string, a ...any)   { e.env.T().Log(fmt.Sprintf(f, a...)) }

type scriptT struct{ ts *testscript.TestScript }

func (s scriptT) Helper()                   {}
func (s scriptT) Fatalf(f string, a ...any) { s.ts.Fatalf(f, a...) }
func (s scriptT) Cleanup(f func())          { s.ts.Defer(f) }
func (s scriptT) Logf(string, ...any)       {} // GoBGP's goroutines must not write the script log

func (st *scriptState) addr(ts *testscript.TestScript, name string) netip.Addr {
	a, ok := st.addrs[name]
	if !ok {
		ts.Fatalf("no address for %q", name)
	}
	return a
}

func cmdSpeaker(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 2 {
		ts.Fatalf("usage: speaker NAME CONFIG.json [OWN...]")
	}
	st := scriptStateOf(ts)
	var cfg desired.Speaker
	ts.Check(json.Unmarshal([]byte(os.Expand(ts.ReadFile(args[1]), ts.Getenv)), &cfg))
	self := st.addr(ts, args[0])
	def := speakerCfg(node{addr: self})
	if cfg.ASN == 0 {
		cfg.ASN = def.ASN
	}
	if !cfg.RouterID.IsValid() {
		cfg.RouterID = self
	}
	if !cfg.ListenAddr.IsValid() {
		cfg.ListenAddr, cfg.ListenPort = self, def.ListenPort
	}
	if cfg.Timers == (desired.Timers{}) {
		cfg.Timers = def.Timers
	}
	if cfg.GracefulRestart == (desired.GracefulRestart{}) {
		cfg.GracefulRestart = def.GracefulRestart
	}
	var own []netip.Prefix
	for _, a := range args[2:] {
		p, err := netip.ParsePrefix(a)
		ts.Check(err)
		own = append(own, p)
	}
	s := st.speakers[args[0]]
	if s == nil {
		s = New(st.log.With("speaker", args[0]), nil)
		st.speakers[args[0]] = s
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := s.Reconcile(ctx, cfg, own)
	if neg != (err != nil) {
		ts.Fatalf("reconcile: %v", err)
	}
}

func cmdRouter(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: router NAME ASN")
	}
	st := scriptStateOf(ts)
	asn, err := strconv.ParseUint(args[1], 10, 32)
	ts.Check(err)
	st.routers[args[0]] = bgptest.NewPeer(scriptT{ts}, st.addr(ts, args[0]), uint32(asn))
}

func (st *scriptState) router(ts *testscript.TestScript, name string) *bgptest.Peer {
	r := st.routers[name]
	if r == nil {
		ts.Fatalf("no router %q", name)
	}
	return r
}

func cmdNeighbor(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) < 3 {
		ts.Fatalf("usage: neighbor ROUTER PEER ASN [gr]")
	}
	st := scriptStateOf(ts)
	asn, err := strconv.ParseUint(args[2], 10, 32)
	ts.Check(err)
	gr := len(args) > 3 && args[3] == "gr"
	st.router(ts, args[0]).AddNeighbor(st.addr(ts, args[1]), uint32(asn), bgptest.NeighborOptions{GracefulRestart: gr, RestartTime: 30})
}

func cmdPaths(ts *testscript.TestScript, args []string, withdraw bool) {
	st := scriptStateOf(ts)
	if len(args) < 2 {
		ts.Fatalf("usage: announce|withdraw ROUTER PREFIX...")
	}
	var ps []netip.Prefix
	for _, a := range args[1:] {
		p, err := netip.ParsePrefix(a)
		ts.Check(err)
		ps = append(ps, p)
	}
	r := st.router(ts, args[0])
	if withdraw {
		r.Withdraw(ps...)
	} else {
		r.Announce(ps...)
	}
}

func (st *scriptState) speaker(ts *testscript.TestScript, name string) *Speaker {
	s := st.speakers[name]
	if s == nil {
		ts.Fatalf("no speaker %q", name)
	}
	return s
}

func formatLearned(st *scriptState, ls []Learned) string {
	byAddr := map[netip.Addr]string{}
	for n, a := range st.addrs {
		byAddr[a] = "$ADDR_" + n
	}
	var b strings.Builder
	for _, l := range ls {
		var nhs []string
		for _, nh := range l.NextHops {
			nhs = append(nhs, byAddr[nh])
		}
		fmt.Fprintf(&b, "%v via %s from %s\n", l.Prefix, strings.Join(nhs, ","), strings.Join(l.Peers, ","))
	}
	return b.String()
}

func cmdLearned(ts *testscript.TestScript, neg bool, args []string) {
	st := scriptStateOf(ts)
	if len(args) == 3 && args[0] == "-wait" {
		want := ts.ReadFile(args[1])
		s := st.speaker(ts, args[2])
		var got string
		if _, err := testutil.Wait(wait, "learned by "+args[2], func() (bool, error) {
			got = formatLearned(st, s.Learned())
			return (got == want) != neg, nil
		}); err != nil {
			ts.Fatalf("%v: learned by %s:\n%s\nwant (neg=%v):\n%s", err, args[2], got, neg, want)
		}
		return
	}
	if len(args) != 1 {
		ts.Fatalf("usage: learned [-wait FILE] NAME")
	}
	fmt.Fprint(ts.Stdout(), formatLearned(st, st.speaker(ts, args[0]).Learned()))
}

func cmdRejected(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: rejected NAME")
	}
	s := scriptStateOf(ts).speaker(ts, args[0])
	status, err := s.Status(context.Background())
	ts.Check(err)
	for _, p := range status.Peers {
		var reasons []string
		for r := range p.Rejected {
			reasons = append(reasons, r)
		}
		slices.Sort(reasons)
		for _, r := range reasons {
			fmt.Fprintf(ts.Stdout(), "%s %s %d\n", p.Name, r, p.Rejected[r])
		}
	}
}

func cmdStop(ts *testscript.TestScript, neg bool, args []string) {
	graceful := len(args) == 2 && args[0] == "-graceful"
	st := scriptStateOf(ts)
	name := args[len(args)-1]
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ts.Check(st.speaker(ts, name).Stop(ctx, graceful))
	delete(st.speakers, name)
}
