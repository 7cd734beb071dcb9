package buildinfo

import (
	"runtime/debug"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestFromBuildInfo(t *testing.T) {
	bi := &debug.BuildInfo{GoVersion: "go1.99.1", Main: debug.Module{Path: "github.com/ducksnest/netd", Version: "v0.3.0"},
		Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "0123abc"}, {Key: "vcs.modified", Value: "true"}, {Key: "vcs.time", Value: "2026-12-01T10:00:00Z"}}}
	for _, tc := range []struct {
		name string
		bi   *debug.BuildInfo
		ld   string
		want Info
	}{
		{"go install", bi, "", Info{Version: "v0.3.0", GoVersion: "go1.99.1", Revision: "0123abc", Modified: true, Time: "2026-12-01T10:00:00Z"}},
		{"packaged", bi, "0.1.0+abc", Info{Version: "0.1.0+abc", GoVersion: "go1.99.1", Revision: "0123abc", Modified: true, Time: "2026-12-01T10:00:00Z"}},
		{"no vcs", &debug.BuildInfo{GoVersion: "go1.99.1"}, "", Info{Version: "(devel)", GoVersion: "go1.99.1", Revision: "unknown"}},
	} {
		got := fromBuildInfo(tc.bi, tc.ld)
		tc.want.Platform = got.Platform
		if got != tc.want {
			t.Errorf("%s: got %+v, want %+v", tc.name, got, tc.want)
		}
	}
}

func TestCollector(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(Collector(Info{Version: "v1", GoVersion: "go1.99.1", Revision: "abc"}))
	want := `# HELP netd_build_info Always 1; the labels say which netd build is running.
# TYPE netd_build_info gauge
netd_build_info{goversion="go1.99.1",revision="abc",version="v1"} 1
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "netd_build_info"); err != nil {
		t.Error(err)
	}
	if in := Get(); in.GoVersion == "" || in.Version == "" || in.Revision == "" {
		t.Errorf("Get() = %+v, want every field set", in)
	}
}
