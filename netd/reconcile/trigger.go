// Package reconcile holds the machinery every netd reconciler shares: a
// coalescing trigger, a loop that runs a reconcile function on a trigger or
// a periodic resync with backoff on failure, and the run metrics and status
// each loop reports.
package reconcile

// Trigger is a one-slot signal: any number of Pokes before the loop wakes up
// collapse into one run. Poke never blocks.
type Trigger struct{ ch chan struct{} }

// NewTrigger returns a trigger that starts out poked, so that the first run
// happens at once.
func NewTrigger() *Trigger {
	t := &Trigger{ch: make(chan struct{}, 1)}
	t.Poke()
	return t
}

// Poke asks for a run.
func (t *Trigger) Poke() {
	select {
	case t.ch <- struct{}{}:
	default:
	}
}

// C is the channel the loop waits on.
func (t *Trigger) C() <-chan struct{} { return t.ch }
