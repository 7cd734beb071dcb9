package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

const gracefulMarker = "graceful-stop"

// putGracefulMarker records that this netd stopped gracefully (its peers
// keep its routes as stale), so that the next start announces itself as
// restarting.
func putGracefulMarker(dir string) error {
	if dir == "" {
		return nil
	}
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return fmt.Errorf("creating state dir: %w", err)
	}
	p := filepath.Join(dir, gracefulMarker)
	if err := os.WriteFile(p, []byte(time.Now().UTC().Format(time.RFC3339Nano)+"\n"), 0o640); err != nil {
		return fmt.Errorf("writing graceful stop marker: %w", err)
	}
	return nil
}

// takeGracefulMarker reports whether the previous netd stopped gracefully
// no longer than restartTime ago (peers still hold its routes), and removes
// the marker either way.
func takeGracefulMarker(dir string, restartTime time.Duration) (bool, error) {
	if dir == "" {
		return false, nil
	}
	p := filepath.Join(dir, gracefulMarker)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("reading %s: %w", p, err)
	}
	if err := os.Remove(p); err != nil {
		return false, fmt.Errorf("removing %s: %w", p, err)
	}
	at, err := time.Parse(time.RFC3339Nano, string(trimNL(b)))
	if err != nil {
		return false, fmt.Errorf("parsing %s: %w", p, err)
	}
	return time.Since(at) < restartTime, nil
}

func trimNL(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}
