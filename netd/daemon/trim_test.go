package daemon

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

func TestReadOnlyMappings(t *testing.T) {
	maps := `00400000-014cd000 r-xp 00000000 fe:00 9978130                            /opt/netd
014cd000-027ce000 r--p 010cd000 fe:00 9978130                            /opt/netd
027ce000-0287d000 rw-p 023ce000 fe:00 9978130                            /opt/netd
0287d000-02900000 rw-p 00000000 00:00 0
7f0000000000-7f0000001000 r--p 00000000 fe:00 12                         /opt/netd-other
7f0000001000-7f0000002000 r--s 00000000 fe:00 9978130                    /opt/netd
7f0000002000-7f0000003000 r-xp 00000000 fe:00 9978131                    /opt/my netd (deleted)
Size:                  4 kB
Rss:                   4 kB
Anonymous:             0 kB
7f0000003000-7f0000004000 r--p 00001000 fe:00 9978130                    /opt/netd
Size:                  4 kB
Rss:                   4 kB
Anonymous:             4 kB
`
	// The last mapping is a PIE build's relocated read-only data
	// (copied on write when the loader relocated it): never trimmed.
	p := filepath.Join(t.TempDir(), "smaps")
	if err := os.WriteFile(p, []byte(maps), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readOnlyMappings(p, "/opt/netd")
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{{0x400000, 0x14cd000}, {0x14cd000, 0x27ce000}}
	if !slices.Equal(got, want) {
		t.Errorf("got %x, want %x", got, want)
	}
	got, err = readOnlyMappings(p, "/opt/my netd")
	if err != nil {
		t.Fatal(err)
	}
	if want := []mapping{{0x7f0000002000, 0x7f0000003000}}; !slices.Equal(got, want) {
		t.Errorf("deleted executable: got %x, want %x", got, want)
	}
}

// TestTrimOnce drops the test binary's own read-only pages and keeps
// running: the code faults back in.
func TestTrimOnce(t *testing.T) {
	n, err := trimOnce()
	if err != nil {
		t.Fatal(err)
	}
	if n == 0 {
		t.Fatal("no read-only mapping of the executable found")
	}
	if _, err := trimOnce(); err != nil {
		t.Fatalf("after the first trim: %v", err)
	}
}
