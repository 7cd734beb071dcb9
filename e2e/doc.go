// Package e2e runs netd end to end in a lab of network namespaces (see
// netd/lab): it builds the netd binary once, brings the ducksnest example
// up with one netd per node and checks connectivity, path MTU, joins,
// leaves, LAN fallback and that netd leaves alone what it does not own.
// The tests need root; they skip otherwise.
//
// Run them with: go test ./e2e/ (as root; -v shows the measurements).
package e2e
