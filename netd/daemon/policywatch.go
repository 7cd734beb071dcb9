package daemon

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/ducksnest/netd/policy"
	"github.com/ducksnest/netd/policy/desired"
)

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
