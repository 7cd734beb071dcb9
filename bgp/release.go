package bgp

import (
	"runtime/debug"
	"sync"
	"time"
)

// Thresholds of releaser: a burst that moved the learned table by at
// least releaseMin destinations, then quiet for releaseQuiet.
const (
	releaseMin   = 1024
	releaseQuiet = 2 * time.Second
)

// releaser returns the heap a burst of updates left behind to the kernel
// once the learned table has stopped changing: after 10k destinations
// arrive (the garbage of the burst, GoBGP's and netd's) or leave (the
// memory their paths held), instead of keeping it until Go's background
// scavenger gets to it minutes later. Small changes never release.
type releaser struct {
	mu         sync.Mutex
	base, last int // destinations at the last release, and now
	timer      *time.Timer
}

// changed notes the learned table's size after a change: once it is at
// least releaseMin away from the last release, a release is due
// releaseQuiet after the last change.
func (r *releaser) changed(n int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.last = n
	if r.timer != nil {
		r.timer.Reset(releaseQuiet)
		return
	}
	if d := n - r.base; d < releaseMin && -d < releaseMin {
		return
	}
	r.timer = time.AfterFunc(releaseQuiet, r.fire)
}

func (r *releaser) fire() {
	r.mu.Lock()
	r.timer, r.base = nil, r.last
	r.mu.Unlock()
	debug.FreeOSMemory()
}
