package bench

import (
	"fmt"
	"slices"
	"time"
)

// median returns the median of xs (the mean of the middle two for an even
// count); NaN-free: 0 for none.
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// medianDuration is median over durations.
func medianDuration(ds []time.Duration) time.Duration {
	xs := make([]float64, len(ds))
	for i, d := range ds {
		xs[i] = float64(d)
	}
	return time.Duration(median(xs))
}

// ratio formats a/b as "0.42×", or "—" when either is missing.
func ratio(a, b float64) string {
	if !(a > 0 && b > 0) { // also NaN
		return "—"
	}
	return fmt.Sprintf("%.2f×", a/b)
}

// mib formats bytes in MiB.
func mib(b float64) string { return fmt.Sprintf("%.1f MiB", b/(1<<20)) }

// perPrefix is the growth from base to v over n prefixes, in bytes.
func perPrefix(v, base int64, n int) float64 {
	if n <= 0 {
		return 0
	}
	return float64(v-base) / float64(n)
}
