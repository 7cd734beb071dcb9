package doctor

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ProcSockets reads the listening TCP sockets of the current network
// namespace from /proc/net/tcp and tcp6, and finds their processes in
// /proc/*/fd. Root is "/proc" unless set (tests).
type ProcSockets struct{ Root string }

// TCPListeners implements Sockets.
func (p ProcSockets) TCPListeners() ([]Listener, error) {
	root := p.Root
	if root == "" {
		root = "/proc"
	}
	var out []Listener
	for _, f := range []string{"net/tcp", "net/tcp6"} {
		b, err := os.ReadFile(filepath.Join(root, f))
		if os.IsNotExist(err) && f == "net/tcp6" {
			continue // no IPv6
		}
		if err != nil {
			return nil, fmt.Errorf("reading listening sockets: %w", err)
		}
		ls, err := ParseProcNetTCP(b)
		if err != nil {
			return nil, fmt.Errorf("parsing %s: %w", f, err)
		}
		out = append(out, ls...)
	}
	owners := socketOwners(root)
	for i := range out {
		out[i].Owner = owners[out[i].Inode]
	}
	return out, nil
}

// ParseProcNetTCP returns the sockets in state LISTEN (0A) of a
// /proc/net/tcp or tcp6 file.
func ParseProcNetTCP(b []byte) ([]Listener, error) {
	var out []Listener
	sc := bufio.NewScanner(bytes.NewReader(b))
	first := true
	for sc.Scan() {
		if first {
			first = false
			continue // header
		}
		f := strings.Fields(sc.Text())
		if len(f) < 10 || f[3] != "0A" {
			continue
		}
		ap, err := parseHexAddrPort(f[1])
		if err != nil {
			return nil, err
		}
		inode, _ := strconv.ParseUint(f[9], 10, 64)
		out = append(out, Listener{Addr: ap, Inode: inode})
	}
	return out, sc.Err()
}

// parseHexAddrPort parses "0100007F:00B3": the address as the kernel's
// 32-bit words in host byte order, the port big-endian hex.
func parseHexAddrPort(s string) (netip.AddrPort, error) {
	as, ps, ok := strings.Cut(s, ":")
	if !ok {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	raw, err := hex.DecodeString(as)
	if err != nil || (len(raw) != 4 && len(raw) != 16) {
		return netip.AddrPort{}, fmt.Errorf("bad socket address %q", s)
	}
	for i := 0; i < len(raw); i += 4 {
		binary.BigEndian.PutUint32(raw[i:], binary.NativeEndian.Uint32(raw[i:]))
	}
	port, err := strconv.ParseUint(ps, 16, 16)
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("bad port in %q", s)
	}
	a, _ := netip.AddrFromSlice(raw)
	return netip.AddrPortFrom(a.Unmap(), uint16(port)), nil
}

// socketOwners maps socket inodes to "comm[pid]".
func socketOwners(root string) map[uint64]string {
	out := map[uint64]string{}
	pids, _ := os.ReadDir(root)
	for _, d := range pids {
		pid, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		fds, err := os.ReadDir(filepath.Join(root, d.Name(), "fd"))
		if err != nil {
			continue
		}
		comm, _ := os.ReadFile(filepath.Join(root, d.Name(), "comm"))
		for _, fd := range fds {
			l, err := os.Readlink(filepath.Join(root, d.Name(), "fd", fd.Name()))
			if err != nil || !strings.HasPrefix(l, "socket:[") {
				continue
			}
			if ino, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]"), 10, 64); err == nil {
				out[ino] = fmt.Sprintf("%s[%d]", strings.TrimSpace(string(comm)), pid)
			}
		}
	}
	return out
}

// listenCheck: BGP listens on the overlay address only.
type listenCheck struct{}

func (listenCheck) Name() string { return "bgp-listen" }

func (listenCheck) Run(ctx context.Context, in *Input) []Finding {
	sp := in.Node.BGP
	port := sp.ListenPort
	if port == 0 {
		port = 179
	}
	id := "port:" + strconv.Itoa(port)
	ls, err := in.Host.Sockets.TCPListeners()
	if err != nil {
		return []Finding{{ID: id, Result: Fail, Summary: "cannot read the listening sockets", Evidence: []string{err.Error()}}}
	}
	var ev, other []string
	ours := false
	for _, l := range ls {
		if int(l.Addr.Port()) != port {
			continue
		}
		line := fmt.Sprintf("listening on %s (socket %d, %s)", l.Addr, l.Inode, orUnknown(l.Owner))
		ev = append(ev, line)
		if l.Addr.Addr() == sp.ListenAddr {
			ours = true
		} else {
			other = append(other, line)
		}
	}
	switch {
	case len(other) > 0:
		return []Finding{{ID: id, Result: Fail, Summary: fmt.Sprintf("something listens for BGP on addresses other than the overlay address %s", sp.ListenAddr),
			Evidence: ev,
			Why:      "a BGP listener on 0.0.0.0 or the LAN lets any host that reaches the node open a session; netd listens on the overlay address alone and its import filter is the only gate on what is learned",
			Fix:      "stop the other speaker (Calico's BIRD: calico_backend none / CALICO_NETWORKING_BACKEND=none; a bird or frr service), and keep the firewall's BGP port open on the overlay only (services.netd.openFirewall opens it on spec.overlay.interface)"}}
	case !ours:
		return []Finding{{ID: id, Result: Fail, Summary: fmt.Sprintf("nothing listens on %s port %d", sp.ListenAddr, port), Evidence: ev,
			Why: "the peers cannot open their BGP sessions to this node",
			Fix: "systemctl status netd; the overlay address must be on " + in.State.Overlay.Interface + " before netd starts (After=tailscaled.service)"}}
	}
	return []Finding{pass(id, fmt.Sprintf("BGP listens on %s:%d only", sp.ListenAddr, port), ev...)}
}

func orUnknown(s string) string {
	if s == "" {
		return "process unknown"
	}
	return s
}
