// Package chaos runs a chaos soak on a lab: a seeded random sequence of
// faults (netd killed, restarted, frozen; links flapped or degraded;
// policy reloads; a hostile external BGP peer) on random nodes with random
// gaps, while a prober pings between every pair of pods. After each fault
// settles it checks the invariants (every node's netd table holds exactly
// the routes the policy and the live state call for, foreign routes are
// untouched, every session is back, netd is not leaking), and at the end
// it reports, per fault class, the packets lost and the time to recover
// against the budgets.
package chaos
