package lab

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"time"

	"github.com/ducksnest/netd/policy/desired"
)

// Defaults.
const (
	DefaultName        = "ducksnest"
	DefaultStateRoot   = "/run/netd-lab"
	DefaultPodsPerNode = 2
	DefaultMetricsAddr = "127.0.0.1:9180"
	tailscaleTable     = 52
	tailscalePriority  = 5270
	podGateway         = "169.254.1.1"
	stateFileName      = "lab.json"
	policyFileName     = "policy.yaml"
)

// Config says what lab to build.
type Config struct {
	// Name prefixes every namespace ("<Name>-"); default "ducksnest".
	Name string
	// State is the compiled policy the topology is built from.
	State *desired.State
	// Policy is the policy file content; it is written to the state dir and
	// passed to every netd.
	Policy []byte
	// Netd is the netd binary.
	Netd string
	// StateDir defaults to /run/netd-lab/<Name>.
	StateDir string
	// PodsPerNode defaults to 2.
	PodsPerNode int
	// Hold lists nodes whose netd Up does not start (to start later with
	// StartNetd).
	Hold []string
	// ConvergeTimeout bounds the wait in Up (default 90s).
	ConvergeTimeout time.Duration
	// Logger receives progress; nil discards.
	Logger *slog.Logger
	// Rootfs, when set, makes every node a systemd container booted from
	// this root file system (scripts/systemd-rootfs.sh) that runs the
	// module's netd.service (see systemd.go).
	Rootfs string
}

// Lab is a built lab. Its exported fields are what lab.json records.
type Lab struct {
	Name       string    `json:"name"`
	StateDir   string    `json:"stateDir"`
	PolicyPath string    `json:"policyPath"`
	Netd       string    `json:"netd"`
	Created    time.Time `json:"created"`
	// Namespaces lists every namespace the lab made, in creation order.
	Namespaces []string     `json:"namespaces"`
	Overlay    Link         `json:"overlay"`
	WAN        string       `json:"wan"` // namespace of the overlay bridge
	LANs       []LAN        `json:"lans,omitempty"`
	PodCIDR    netip.Prefix `json:"podCIDR"`
	Table      int          `json:"table"`
	Protocol   int          `json:"protocol"`
	Priority   int          `json:"rulePriority"`
	Nodes      []*Node      `json:"nodes"`
	// NetdArgs are extra `netd run` arguments per node, after the ones the
	// NixOS module renders for it.
	NetdArgs map[string][]string `json:"netdArgs,omitempty"`
	// NetdEnv is the environment every node's netd gets on top of the
	// lab's own (without any tailnet credentials of the caller's): the
	// variables the NixOS module sets, such as the tailnet credentials in
	// the tailnet lab.
	NetdEnv []string `json:"netdEnv,omitempty"`
	// TailscaleSockets are the LocalAPI sockets of the nodes' tailscaled in
	// the tailnet lab: netd runs as the module renders it for a node with
	// tailscaled, pointed at this socket.
	TailscaleSockets map[string]string `json:"tailscaleSockets,omitempty"`
	// Systemd is set in the systemd lab (every node a container).
	Systemd *SystemdLab `json:"systemd,omitempty"`

	log *slog.Logger
	// stopTailnet ends the tailnet lab's background work (keepServed);
	// DownTailnet calls it.
	stopTailnet context.CancelFunc
	// procs are the netd processes this Lab value started (to reap them).
	procs map[string]*proc
}

// LAN is a LAN bridge namespace.
type LAN struct {
	Name   string       `json:"name"`
	NS     string       `json:"ns"`
	Prefix netip.Prefix `json:"prefix"`
	MTU    int          `json:"mtu"`
}

// Link is an interface name and MTU.
type Link struct {
	Interface string `json:"interface"`
	MTU       int    `json:"mtu"`
}

// Node is one node namespace.
type Node struct {
	Name        string         `json:"name"`
	NS          string         `json:"ns"`
	Site        string         `json:"site"`
	OverlayAddr netip.Addr     `json:"overlayAddr"`
	LANAddr     netip.Addr     `json:"lanAddr,omitzero"`
	LAN         string         `json:"lan,omitempty"`
	LANLink     Link           `json:"lanLink,omitzero"`
	PodCIDRs    []netip.Prefix `json:"podCIDRs,omitempty"`
	Pods        []Pod          `json:"pods,omitempty"`
	Probe       *Pod           `json:"probe,omitempty"`
	Netd        *Process       `json:"netd,omitempty"`
	// Container is the node's systemd container in the systemd lab.
	Container *Container `json:"container,omitempty"`
	Socket    string     `json:"socket"`
	Log       string     `json:"log"`
}

// Pod is one pod namespace.
type Pod struct {
	Name     string     `json:"name"`
	NS       string     `json:"ns"`
	Node     string     `json:"node"`
	Addr     netip.Addr `json:"addr"`
	HostVeth string     `json:"hostVeth"`
	MTU      int        `json:"mtu"`
}

// Process is a started netd.
type Process struct {
	PID int `json:"pid"`
	// StartTicks is field 22 of /proc/PID/stat, to tell a reused pid.
	StartTicks uint64    `json:"startTicks"`
	Started    time.Time `json:"started"`
}

// Node returns the node called name.
func (l *Lab) Node(name string) (*Node, error) {
	for _, n := range l.Nodes {
		if n.Name == name {
			return n, nil
		}
	}
	return nil, fmt.Errorf("no node %q in lab %s", name, l.Name)
}

// AllPods returns the regular (non-probe) pods of every node.
func (l *Lab) AllPods() []Pod {
	var ps []Pod
	for _, n := range l.Nodes {
		ps = append(ps, n.Pods...)
	}
	return ps
}

// StateDirFor returns the default state dir of the lab called name.
func StateDirFor(name string) string { return filepath.Join(DefaultStateRoot, name) }

func (l *Lab) save() error {
	b, err := json.MarshalIndent(l, "", "  ")
	if err != nil {
		return fmt.Errorf("encoding lab state: %w", err)
	}
	tmp := filepath.Join(l.StateDir, stateFileName+".tmp")
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("writing lab state: %w", err)
	}
	if err := os.Rename(tmp, filepath.Join(l.StateDir, stateFileName)); err != nil {
		return fmt.Errorf("writing lab state: %w", err)
	}
	return nil
}

// ErrNoLab is returned by Load when the lab has no state file.
var ErrNoLab = errors.New("no lab state")

// Load reads the state of a lab built earlier (by this or another process).
func Load(stateDir string, log *slog.Logger) (*Lab, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, stateFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%w in %s", ErrNoLab, stateDir)
	}
	if err != nil {
		return nil, fmt.Errorf("reading lab state: %w", err)
	}
	l := &Lab{}
	if err := json.Unmarshal(b, l); err != nil {
		return nil, fmt.Errorf("decoding lab state %s: %w", stateDir, err)
	}
	l.log = orDiscard(log)
	l.procs = map[string]*proc{}
	return l, nil
}

func orDiscard(l *slog.Logger) *slog.Logger {
	if l == nil {
		return slog.New(slog.DiscardHandler)
	}
	return l
}
