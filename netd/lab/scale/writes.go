package scale

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ducksnest/netd/netd/lab"
)

// writeCounter counts the kernel's route notifications (RTM_NEWROUTE and
// RTM_DELROUTE) for netd's table and protocol in every node namespace:
// what netd wrote, as the kernel saw it.
type writeCounter struct {
	done chan struct{}
	wg   sync.WaitGroup

	mu     sync.Mutex
	counts map[string]int
	last   time.Time
	errs   int
}

func countWrites(l *lab.Lab) (*writeCounter, error) {
	w := &writeCounter{done: make(chan struct{}), counts: map[string]int{}, last: time.Now()}
	for _, n := range l.Nodes {
		h, err := netns.GetFromName(n.NS)
		if err != nil {
			w.stop()
			return nil, fmt.Errorf("opening %s: %w", n.NS, err)
		}
		ch := make(chan netlink.RouteUpdate, 4096)
		err = netlink.RouteSubscribeWithOptions(ch, w.done, netlink.RouteSubscribeOptions{
			Namespace:         &h,
			ReceiveBufferSize: 1 << 20,
			ErrorCallback:     func(error) { w.mu.Lock(); w.errs++; w.mu.Unlock() },
		})
		_ = h.Close()
		if err != nil {
			w.stop()
			return nil, fmt.Errorf("watching routes in %s: %w", n.NS, err)
		}
		w.wg.Add(1)
		go func(name string) {
			defer w.wg.Done()
			for u := range ch {
				if u.Table != l.Table || int(u.Protocol) != l.Protocol {
					continue
				}
				w.mu.Lock()
				w.counts[name]++
				w.last = time.Now()
				w.mu.Unlock()
			}
		}(n.Name)
	}
	return w, nil
}

// snapshot returns the counts so far.
func (w *writeCounter) snapshot() map[string]int {
	w.mu.Lock()
	defer w.mu.Unlock()
	out := make(map[string]int, len(w.counts))
	for k, v := range w.counts {
		out[k] = v
	}
	return out
}

// errors is how many times a watch failed (a full socket buffer loses
// notifications: the counts are then a lower bound).
func (w *writeCounter) errors() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.errs
}

// waitQuiet waits until no node has written a route for quiet, or until
// limit; it reports whether it got quiet.
func (w *writeCounter) waitQuiet(ctx context.Context, quiet, limit time.Duration) bool {
	end := time.Now().Add(limit)
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	for {
		w.mu.Lock()
		since := time.Since(w.last)
		w.mu.Unlock()
		if since >= quiet {
			return true
		}
		if time.Now().After(end) {
			return false
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}

// stop ends the watches.
func (w *writeCounter) stop() {
	select {
	case <-w.done:
	default:
		close(w.done)
	}
	w.wg.Wait()
}

// delta is after-before per node, without skip.
func delta(before, after map[string]int, skip string) (total, nodes int) {
	for k, v := range after {
		if k == skip {
			continue
		}
		if d := v - before[k]; d > 0 {
			total += d
			nodes++
		}
	}
	return total, nodes
}
