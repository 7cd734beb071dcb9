package chaos

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ducksnest/netd/netd/lab"
)

// Usage is one sample of a netd's resources, from its /metrics.
type Usage struct {
	Goroutines float64 `json:"goroutines"`
	FDs        float64 `json:"openFDs"`
	RSS        float64 `json:"rssBytes"`
}

// sampleUsage reads go_goroutines, process_open_fds and
// process_resident_memory_bytes from a node's netd.
func sampleUsage(ctx context.Context, l *lab.Lab, n *lab.Node) (Usage, error) {
	var conn net.Conn
	err := lab.InNS(n.NS, func() error {
		var d net.Dialer
		ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		defer cancel()
		var err error
		conn, err = d.DialContext(ctx, "tcp4", lab.DefaultMetricsAddr)
		return err
	})
	if err != nil {
		return Usage{}, fmt.Errorf("metrics of %s: %w", n.Name, err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: netd\r\n\r\n"); err != nil {
		return Usage{}, fmt.Errorf("metrics of %s: %w", n.Name, err)
	}
	b, err := io.ReadAll(conn)
	if err != nil {
		return Usage{}, fmt.Errorf("metrics of %s: %w", n.Name, err)
	}
	body := string(b)
	var u Usage
	found := 0
	sc := bufio.NewScanner(strings.NewReader(body))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		name, val, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			continue
		}
		var dst *float64
		switch name {
		case "go_goroutines":
			dst = &u.Goroutines
		case "process_open_fds":
			dst = &u.FDs
		case "process_resident_memory_bytes":
			dst = &u.RSS
		default:
			continue
		}
		v, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		if err != nil {
			return Usage{}, fmt.Errorf("metrics of %s: %s: %w", n.Name, name, err)
		}
		*dst = v
		found++
	}
	if found != 3 {
		return Usage{}, fmt.Errorf("metrics of %s: found %d of go_goroutines, process_open_fds, process_resident_memory_bytes", n.Name, found)
	}
	return u, nil
}

// Growth limits: the median of the last third of a node's settled samples
// may exceed the median of the first third by at most this factor plus
// this slack (netd restarts during the soak, so samples span processes;
// settled states are comparable).
const (
	growthFactor     = 1.25
	goroutineSlack   = 20
	fdSlack          = 10
	rssFactor        = 1.5
	rssSlack         = 32 << 20
	minGrowthSamples = 6
)

// Leak is a resource that grew over the run.
type Leak struct {
	Node, What    string
	First, Last   float64
	Limit         float64
	SamplesPerEnd int
}

func (k Leak) String() string {
	return fmt.Sprintf("%s of netd on %s grew from %.0f to %.0f (limit %.0f; medians of %d samples)", k.What, k.Node, k.First, k.Last, k.Limit, k.SamplesPerEnd)
}

// checkGrowth compares the first and last third of each node's samples.
func checkGrowth(samples map[string][]Usage) (leaks []Leak, checked bool) {
	for node, us := range samples {
		if len(us) < minGrowthSamples {
			continue
		}
		checked = true
		k := len(us) / 3
		med := func(part []Usage, f func(Usage) float64) float64 {
			vs := make([]float64, len(part))
			for i, u := range part {
				vs[i] = f(u)
			}
			slices.Sort(vs)
			return vs[len(vs)/2]
		}
		for _, m := range []struct {
			what   string
			f      func(Usage) float64
			factor float64
			slack  float64
		}{
			{"goroutines", func(u Usage) float64 { return u.Goroutines }, growthFactor, goroutineSlack},
			{"open fds", func(u Usage) float64 { return u.FDs }, growthFactor, fdSlack},
			{"RSS bytes", func(u Usage) float64 { return u.RSS }, rssFactor, rssSlack},
		} {
			first, last := med(us[:k], m.f), med(us[len(us)-k:], m.f)
			if limit := first*m.factor + m.slack; last > limit {
				leaks = append(leaks, Leak{Node: node, What: m.what, First: first, Last: last, Limit: limit, SamplesPerEnd: k})
			}
		}
	}
	return leaks, checked
}
