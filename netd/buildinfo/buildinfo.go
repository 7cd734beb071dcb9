// Package buildinfo says which netd this is: its version, the Go release
// that built it and the source revision, from the binary's embedded build
// information (runtime/debug.ReadBuildInfo) and, for packaged builds, a
// version set with -ldflags "-X github.com/ducksnest/netd/netd/buildinfo.version=V".
// `netd version` prints it and the daemon exports it as netd_build_info.
package buildinfo

import (
	"runtime"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"
)

// version is set by packagers with -ldflags -X (nixos/package.nix does).
var version string

// Info describes the running binary.
type Info struct {
	// Version is the packaged version, or the module version for
	// `go install ...@vX`, or "(devel)" for a build from a work tree.
	Version   string `json:"version"`
	GoVersion string `json:"goVersion"`
	// Revision is the VCS commit the binary was built from ("unknown"
	// when the build recorded none, as with -buildvcs=false or a source
	// tarball); Modified says the work tree had uncommitted changes.
	Revision string `json:"revision"`
	Modified bool   `json:"modified,omitempty"`
	// Time is the commit time (RFC 3339), when recorded.
	Time     string `json:"time,omitempty"`
	Platform string `json:"platform"`
}

// Get reads the build information of the running binary.
func Get() Info {
	bi, _ := debug.ReadBuildInfo()
	return fromBuildInfo(bi, version)
}

func fromBuildInfo(bi *debug.BuildInfo, ldVersion string) Info {
	in := Info{Version: ldVersion, GoVersion: runtime.Version(), Revision: "unknown",
		Platform: runtime.GOOS + "/" + runtime.GOARCH}
	if bi == nil {
		if in.Version == "" {
			in.Version = "unknown"
		}
		return in
	}
	if bi.GoVersion != "" {
		in.GoVersion = bi.GoVersion
	}
	if in.Version == "" {
		in.Version = bi.Main.Version
	}
	if in.Version == "" {
		in.Version = "(devel)"
	}
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			in.Revision = s.Value
		case "vcs.modified":
			in.Modified = s.Value == "true"
		case "vcs.time":
			in.Time = s.Value
		}
	}
	return in
}

// Collector returns the netd_build_info gauge: always 1, its labels say
// which binary runs (version, goversion, revision), as Prometheus' own
// prometheus_build_info does.
func Collector(in Info) prometheus.Collector {
	g := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "netd_build_info",
		Help:        "Always 1; the labels say which netd build is running.",
		ConstLabels: prometheus.Labels{"version": in.Version, "goversion": in.GoVersion, "revision": in.Revision},
	})
	g.Set(1)
	return g
}
