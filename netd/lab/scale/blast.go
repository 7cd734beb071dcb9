package scale

import (
	"context"
	"fmt"
	"time"

	"github.com/ducksnest/netd/netd/lab"
)

// Restart kinds.
const (
	// KindKill is kill -9 and a new start: the peers keep the node's routes
	// (graceful restart) until it is back.
	KindKill = "kill -9"
	// KindTerm is SIGTERM and a new start: the node withdraws its routes
	// (the module's --stop-mode=withdraw), the peers remove them.
	KindTerm = "SIGTERM"
)

// Blast is what one node's restart did to the others.
type Blast struct {
	Fault string `json:"fault"`
	Node  string `json:"node"`
	// Writes are the route writes on the other nodes, on NodesWritten of
	// them, from the fault until no route was written for Quiet.
	Writes       int `json:"writes"`
	NodesWritten int `json:"nodesWritten"`
	// Sent and Lost are the pings between pods of other nodes; SentTo and
	// LostTo those from other nodes' pods to the restarted node's.
	Sent   int `json:"sent"`
	Lost   int `json:"lost"`
	SentTo int `json:"sentTo"`
	LostTo int `json:"lostTo"`
	// Recover is from the fault until every node holds every block again.
	Recover time.Duration `json:"recover"`
}

// blast restarts node's netd (kind) with pings running between pods of
// the other nodes and to the node, and counts what the others saw.
func blast(ctx context.Context, l *lab.Lab, c Config, w *writeCounter, kind, node string) (Blast, error) {
	b := Blast{Fault: kind, Node: node}
	var others []*lab.Node
	var victim *lab.Node
	for _, n := range l.Nodes {
		if n.Name == node {
			victim = n
		} else if len(n.Pods) > 0 {
			others = append(others, n)
		}
	}
	if victim == nil || len(victim.Pods) == 0 || len(others) < 2 {
		return b, fmt.Errorf("restart of %s: no such node with a pod, or fewer than two others", node)
	}
	var between, to []*lab.PingStream
	defer func() {
		for _, s := range append(between, to...) {
			s.Stop()
		}
	}()
	// Pairs spread over the others: i to i+half, half way round.
	step := max(1, len(others)/c.Pairs)
	for i := 0; i < len(others) && len(between) < c.Pairs; i += step {
		src, dst := others[i].Pods[0], others[(i+len(others)/2)%len(others)].Pods[0]
		s, err := lab.StartPingStream(src.NS, src.Addr, dst.Addr, c.Interval)
		if err != nil {
			return b, err
		}
		between = append(between, s)
	}
	for i := 0; i < len(others) && len(to) < 5; i += max(1, len(others)/5) {
		src := others[i].Pods[0]
		s, err := lab.StartPingStream(src.NS, src.Addr, victim.Pods[0].Addr, c.Interval)
		if err != nil {
			return b, err
		}
		to = append(to, s)
	}
	before := w.snapshot()
	start := time.Now()
	switch kind {
	case KindKill:
		if err := l.KillNetd(ctx, node); err != nil {
			return b, err
		}
	case KindTerm:
		if err := l.StopNetd(ctx, node, 30*time.Second); err != nil {
			return b, err
		}
	default:
		return b, fmt.Errorf("unknown restart kind %q", kind)
	}
	if err := l.StartNetd(ctx, node); err != nil {
		return b, err
	}
	var all []string
	for _, n := range l.Nodes {
		all = append(all, n.Name)
	}
	if err := waitConverged(ctx, l, all, 3*time.Minute); err != nil {
		return b, fmt.Errorf("after %s of %s: %w", kind, node, err)
	}
	b.Recover = time.Since(start)
	w.waitQuiet(ctx, c.Quiet, time.Minute)
	b.Writes, b.NodesWritten = delta(before, w.snapshot(), node)
	for _, s := range between {
		sent, lost := s.Stop()
		b.Sent, b.Lost = b.Sent+sent, b.Lost+len(lost)
	}
	for _, s := range to {
		sent, lost := s.Stop()
		b.SentTo, b.LostTo = b.SentTo+sent, b.LostTo+len(lost)
	}
	between, to = nil, nil
	return b, nil
}
