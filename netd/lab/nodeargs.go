package lab

import (
	_ "embed"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"sync"
)

// nixosUnitsJSON is what the NixOS module renders for each lab node
// (nixos/lab-nodes.nix: the host's configuration plus the lab's listed
// differences), written by nixos/check.sh, which fails when it is stale.
//
//go:embed nixos_units.json
var nixosUnitsJSON []byte

// Overlay kinds, the keys of nixos_units.json.
const (
	overlayEmulated  = "emulated"
	overlayTailscale = "tailscale"
	// templateNode is the entry for a node that is not a NixOS host (a
	// policy other than the example's); nodePlaceholder is its name.
	templateNode    = "*"
	nodePlaceholder = "@node@"
	// netdExe is the module's ExecStart program.
	netdExe = "@netd@/bin/netd"
)

// NixOSUnit is the netd unit that NixOS renders for one lab node, with
// store paths written @name@.
type NixOSUnit struct {
	// Argv is the unit's ExecStart, split into arguments.
	Argv []string `json:"argv"`
	// Environment is the unit's Environment= (not applied by the lab).
	Environment map[string]string `json:"environment"`
	// Unit is the unit file.
	Unit string `json:"unit"`
}

type nixosUnits struct {
	Nodes map[string]map[string]NixOSUnit `json:"nodes"`
}

var (
	unitsOnce sync.Once
	units     nixosUnits
	unitsErr  error
)

// NixOSUnitFor returns the netd unit NixOS renders for node on the given
// overlay ("emulated" or "tailscale"); a node that is not a NixOS host gets
// the template, with its name filled in.
func NixOSUnitFor(overlay, node string) (NixOSUnit, error) {
	unitsOnce.Do(func() {
		if err := json.Unmarshal(nixosUnitsJSON, &units); err != nil {
			unitsErr = fmt.Errorf("decoding the embedded nixos_units.json: %w", err)
		}
	})
	if unitsErr != nil {
		return NixOSUnit{}, unitsErr
	}
	byNode, ok := units.Nodes[overlay]
	if !ok {
		return NixOSUnit{}, fmt.Errorf("nixos_units.json has no overlay %q", overlay)
	}
	u, ok := byNode[node]
	if !ok {
		t, ok := byNode[templateNode]
		if !ok {
			return NixOSUnit{}, fmt.Errorf("nixos_units.json has neither node %q nor a template for overlay %q", node, overlay)
		}
		u = NixOSUnit{Argv: make([]string, len(t.Argv)), Environment: t.Environment,
			Unit: strings.ReplaceAll(t.Unit, nodePlaceholder, node)}
		for i, a := range t.Argv {
			u.Argv[i] = strings.ReplaceAll(a, nodePlaceholder, node)
		}
	}
	return u, nil
}

// netdArgv is the command line the lab runs for a node's netd: the
// module's ExecStart with the deployed paths mapped to the lab's (paths:
// deployed path -> lab path). An argument naming a path or a placeholder
// the lab cannot map is an error, so the lab never silently runs
// something other than what the module deploys.
func netdArgv(u NixOSUnit, netd string, paths map[string]string) ([]string, error) {
	if len(u.Argv) < 2 || u.Argv[0] != netdExe || u.Argv[1] != "run" {
		return nil, fmt.Errorf("module ExecStart %q does not run %s run", u.Argv, netdExe)
	}
	argv := []string{netd, "run"}
	for _, a := range u.Argv[2:] {
		name, value, hasValue := strings.Cut(a, "=")
		if hasValue {
			if p, ok := paths[value]; ok {
				a = name + "=" + p
			} else if strings.HasPrefix(value, "/") || strings.ContainsAny(value, "@%") {
				return nil, fmt.Errorf("module ExecStart argument %q: the lab cannot map %q (nixos/lab-nodes.nix or netd/lab/nodeargs.go)", a, value)
			}
		}
		if strings.Contains(a, "@") {
			return nil, fmt.Errorf("module ExecStart argument %q has an unmapped placeholder", a)
		}
		argv = append(argv, a)
	}
	return argv, nil
}

// nodeArgv is the command line of a node's netd: the module's for the node
// and the lab's overlay, then l.NetdArgs[node], then extra.
func (l *Lab) nodeArgv(n *Node, extra []string) ([]string, error) {
	overlay := overlayEmulated
	paths := map[string]string{
		"/etc/netd/policy.yaml": l.PolicyPath,
		"/run/netd/netd.sock":   n.Socket,
		"/run/netd":             filepath.Join(l.StateDir, n.Name),
	}
	if sock, ok := l.TailscaleSockets[n.Name]; ok {
		overlay = overlayTailscale
		paths["/run/tailscale/tailscaled.sock"] = sock
	}
	u, err := NixOSUnitFor(overlay, n.Name)
	if err != nil {
		return nil, err
	}
	argv, err := netdArgv(u, l.Netd, paths)
	if err != nil {
		return nil, fmt.Errorf("netd command line of %s: %w", n.Name, err)
	}
	return append(append(argv, l.NetdArgs[n.Name]...), extra...), nil
}
