package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
)

// policyState is the last good policy and this node in it. A reload
// replaces both at once, or is rejected and only recorded.
type policyState struct {
	mu        sync.Mutex
	state     *desired.State
	self      *desired.Node
	loadedAt  time.Time
	lastError string
}

func newPolicyState(st *desired.State, self *desired.Node) *policyState {
	return &policyState{state: st, self: self, loadedAt: time.Now()}
}

// current returns the last good state and this node in it.
func (p *policyState) current() (*desired.State, *desired.Node) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state, p.self
}

// set takes a new good state and clears the last error; it reports
// whether the policy changed.
func (p *policyState) set(st *desired.State, self *desired.Node) (changed bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	changed = st.Digest != p.state.Digest
	p.state, p.self, p.lastError, p.loadedAt = st, self, "", time.Now()
	return changed
}

// reject records a rejected reload; the last good state stays.
func (p *policyState) reject(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastError = err.Error()
}

// status returns what `netd status` shows of the policy.
func (p *policyState) status(path string) PolicyStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return PolicyStatus{Path: path, Digest: p.state.Digest, LoadedAt: p.loadedAt, LastError: p.lastError}
}

// loadPolicy reads, validates and compiles the policy file.
func loadPolicy(path string) (*desired.State, error) {
	f, err := policy.LoadFile(path)
	if err != nil {
		return nil, err
	}
	st, err := policy.Compile(f)
	if err != nil {
		return nil, err
	}
	st.Source = path
	return st, nil
}

// watchPolicy pokes reload whenever the policy file may have changed. It
// watches the directory, not the file, so that editors that write a new file
// and rename it, and Kubernetes ConfigMap symlink swaps, are seen too.
// Bursts of events are collapsed into one reload after a short quiet time.
func watchPolicy(ctx context.Context, log *slog.Logger, path string, reload func()) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watching policy file: %w", err)
	}
	defer w.Close()
	dir := filepath.Dir(path)
	if err := w.Add(dir); err != nil {
		return fmt.Errorf("watching %s: %w", dir, err)
	}
	base := filepath.Base(path)
	var quiet <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// ConfigMap mounts swap a "..data" symlink; any change in the
			// directory that touches our name or that link counts.
			if n := filepath.Base(ev.Name); n == base || n == "..data" {
				quiet = time.After(150 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("policy watch error", "err", err)
		case <-quiet:
			quiet = nil
			if _, err := os.Stat(path); err == nil {
				reload()
			}
		}
	}
}
