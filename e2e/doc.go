// Package e2e runs netd end to end in a lab of network namespaces (see
// netd/lab): it builds the netd binary once, brings the ducksnest example
// up with one netd per node and checks connectivity, path MTU, joins,
// leaves, LAN fallback and that netd leaves alone what it does not own.
// The tests need root; they skip otherwise.
//
// Two kinds of test share the package's time. The fault tests (restarts,
// BFD detection, overlay flaps, overlapping restarts, the hostile LAN
// peer, resyncs) hold a loss or detection-time budget against an
// independent pinger (TestTailnet too: BFD over the real tailnet); they
// run one at a time, first. The others (the systemd and Kubernetes labs,
// the tailnet doctor, the tailnet policy writer, doctor, interop, join and
// leave, the CLI) call t.Parallel and then run two at a time (-parallel defaults
// to GOMAXPROCS), which keeps the package within the CI budget (see
// DEVELOPERS.md). Every test must pass on a loaded machine either way:
// nothing here depends on a timer firing on time, and each test owns its
// lab (random name), its API server (free ports) and its processes.
//
// Run them with: go test ./e2e/ (as root; -v shows the measurements).
package e2e
