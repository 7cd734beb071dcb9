package daemon

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// trimAfter are the delays after readiness at which netd drops the pages
// its start-up touched: at readiness, and once the sessions that were
// still opening then are up.
var trimAfter = []time.Duration{0, 30 * time.Second}

// trimResident runs trimOnce at each of trimAfter, until ctx is done.
func trimResident(ctx context.Context, log *slog.Logger) {
	start := time.Now()
	for _, after := range trimAfter {
		t := time.NewTimer(time.Until(start.Add(after)))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		dropped, err := trimOnce()
		if err != nil {
			log.Debug("trimming resident memory", "err", err)
			continue
		}
		log.Debug("trimmed resident memory", "unmappedBytes", dropped)
	}
}

// trimOnce returns freed heap to the kernel and unmaps the read-only pages
// of netd's own executable (code, read-only data, the function tables) that
// start-up touched: package initialisation, policy parsing and building
// the speaker touch code all over the 50 MB binary, and with the kernel's
// fault-around each touch maps 64 KiB of it. The pages stay in the page
// cache; those the running daemon uses fault back in (minor faults, no
// I/O), the others stop counting in netd's resident set and the kernel
// may reclaim them. Writable mappings are never touched, nor a read-only
// one that holds copied-on-write pages (a PIE build's relocated
// .data.rel.ro, made read-only after the loader wrote it): dropping those
// would bring back the file's unrelocated bytes.
func trimOnce() (int, error) {
	debug.FreeOSMemory()
	exe, err := os.Executable()
	if err != nil {
		return 0, fmt.Errorf("finding the executable: %w", err)
	}
	ranges, err := readOnlyMappings("/proc/self/smaps", exe)
	if err != nil {
		return 0, err
	}
	total := 0
	for _, r := range ranges {
		if _, _, errno := unix.Syscall(unix.SYS_MADVISE, r.start, r.end-r.start, unix.MADV_DONTNEED); errno != 0 {
			return total, fmt.Errorf("madvise %#x-%#x: %w", r.start, r.end, errno)
		}
		total += int(r.end - r.start)
	}
	return total, nil
}

type mapping struct{ start, end uintptr }

// readOnlyMappings lists the mappings of path in a /proc/PID/smaps file
// that are private, not writable and hold no anonymous (copied-on-write)
// pages.
func readOnlyMappings(smaps, path string) ([]mapping, error) {
	f, err := os.Open(smaps)
	if err != nil {
		return nil, fmt.Errorf("reading mappings: %w", err)
	}
	defer f.Close()
	var out []mapping
	var cur *mapping // the candidate whose detail lines follow
	flush := func() {
		if cur != nil {
			out = append(out, *cur)
			cur = nil
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && strings.HasSuffix(fields[0], ":") {
			// A detail line: "Anonymous: N kB".
			if cur != nil && fields[0] == "Anonymous:" && fields[1] != "0" {
				cur = nil
			}
			continue
		}
		flush()
		// A header: start-end perms offset dev inode path
		if len(fields) < 6 {
			continue
		}
		if strings.TrimSuffix(strings.Join(fields[5:], " "), " (deleted)") != path {
			continue
		}
		perms := fields[1]
		if len(perms) != 4 || perms[1] == 'w' || perms[3] != 'p' {
			continue
		}
		lo, hi, ok := strings.Cut(fields[0], "-")
		if !ok {
			continue
		}
		start, err1 := strconv.ParseUint(lo, 16, 64)
		end, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || end <= start {
			continue
		}
		cur = &mapping{uintptr(start), uintptr(end)}
	}
	flush()
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("reading mappings: %w", err)
	}
	return out, nil
}
