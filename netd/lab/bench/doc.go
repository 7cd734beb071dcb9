// Package bench is `netd lab bench`: netd measured side by side with the
// BGP daemons it is compared with (Debian's gobgpd and BIRD 2), in one run
// on one machine, each in the same namespaces of one lab with the same
// peers and timers.
//
// The figures: idle VmRSS per node (and RssAnon, RssFile and the Go heap
// for netd), idle CPU of the four lab nodes (utime+stime of
// /proc/PID/stat), VmRSS growth per prefix while 10k prefixes are learned
// from an external BIRD peer (peak, steady, after withdrawal), restart ->
// sessions up and routes back (kill -9 and SIGTERM), and kernel route
// install against `ip -batch` and BIRD. The machine is shared, so the
// table gives medians and ratios measured in the same run, with the load
// average; nothing here is a pass/fail timing assert.
package bench
