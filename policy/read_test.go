package policy

import (
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// A file that cannot be read is a ReadError; one that was read but is too
// large is a problem (an ErrorList) with a hint, and LoadReader stops
// reading at the cap.
func TestLoadFileReadAndSize(t *testing.T) {
	_, err := LoadFile(filepath.Join(t.TempDir(), "missing.yaml"))
	var re *ReadError
	if !errors.As(err, &re) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("missing file: %v (%T), want a *ReadError wrapping ErrNotExist", err, err)
	}

	big := filepath.Join(t.TempDir(), "big.yaml")
	if err := os.WriteFile(big, []byte(strings.Repeat("# padding\n", MaxFileSize/10+1)), 0o644); err != nil {
		t.Fatal(err)
	}
	_, err = LoadFile(big)
	var l ErrorList
	if !errors.As(err, &l) || len(l) != 1 || !strings.Contains(l[0].Msg, "larger than 4 MiB") || l[0].Hint == "" || l[0].File != big {
		t.Errorf("big file: %v", err)
	}

	// An endless reader: LoadReader reads MaxFileSize+1 bytes and stops.
	r := &countingReader{}
	if _, err := LoadReader("-", r); !errors.As(err, &l) {
		t.Errorf("endless input: %v", err)
	}
	if r.n != MaxFileSize+1 {
		t.Errorf("read %d bytes of an endless input, want %d", r.n, MaxFileSize+1)
	}

	data, err := os.ReadFile("../" + exampleName)
	if err != nil {
		t.Fatal(err)
	}
	f, err := LoadReader("-", strings.NewReader(string(data)))
	if err != nil || f.Source() != "-" {
		t.Errorf("example from a reader: %v", err)
	}
}

type countingReader struct{ n int }

func (r *countingReader) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = '#'
	}
	r.n += len(p)
	return len(p), nil
}

var _ io.Reader = (*countingReader)(nil)
