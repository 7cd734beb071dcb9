// Package lab builds and drives a local multi-node ducksnest network made of
// Linux network namespaces, runs one netd per node in it and checks that
// every pod reaches every other pod.
//
// # Topology
//
// Every namespace is named "<lab>-..." (default lab name "ducksnest"):
//
//	<lab>-lan            bridge br0 (MTU of the LAN): the home LAN
//	<lab>-wan            bridge br0 (MTU 1280): stands in for tailscale0
//	<lab>-<node>         one per node of the policy
//	<lab>-<node>-pod<i>  two (Config.PodsPerNode) pods per node
//	<lab>-<node>-probe   one probe pod per node, MTU 1500, for path-MTU checks
//
// A node with a LAN address gets a veth named as the LAN's interface
// (default eth0) with its address and the LAN prefix length, attached to the
// LAN bridge. Every node gets a veth named as the policy's overlay interface
// (tailscale0) with its overlay address as a /32 and the overlay MTU,
// attached to the WAN bridge; the lab emulates what tailscaled does there:
// "100.64.0.0/10 dev tailscale0 table 52" and "priority 5270 lookup 52", so
// netd has to coexist with table 52. A node with no LAN address (the EC2
// control plane) is reachable only over the overlay. The bridge stands in
// for the tunnel, so a route into the overlay needs a gateway (the peer's
// overlay address, onlink); a device-only route would ARP for the pod
// address and fail.
//
// Pods are wired as Calico wires them: eth0 with the pod address as a /32,
// "default via 169.254.1.1 dev eth0 onlink", and a node-side veth cali<hash>
// with proxy_arp=1 and a host route "<pod>/32 dev cali..." in the node's
// main table; pod MTU = desired.State.PodMTU (what Felix would set). Because
// the node has no default route, proxy ARP would not answer for 169.254.1.1,
// so the lab also adds a permanent neighbour entry for it in the pod (as
// the Calico CNI plugin does on some versions). Nodes forward (ip_forward=1)
// with rp_filter=0.
//
// Nothing reaches the host: no namespace has a default route towards the
// host, there is no NAT and no veth into the root namespace
// (CheckIsolation asserts it).
//
// # Processes and state
//
// Up starts "ip netns exec <lab>-<node> netd run ..." per node, with the
// ExecStart that the NixOS module renders for that node
// (nixos/lab-nodes.nix, embedded as nixos_units.json by nixos/check.sh)
// and its deployed paths mapped to the lab's (policy, status socket
// <statedir>/<node>.sock, state dir <statedir>/<node>, tailscaled socket),
// in its own session, logs to <statedir>/<node>.log, and records pid and start
// time in <statedir>/lab.json (default statedir /run/netd-lab/<lab>). Down
// ends the recorded processes after checking /proc/PID/cmdline and the start
// time still match, ends every other process found in a lab namespace (ip
// netns pids), and deletes every namespace with the lab prefix. It works
// after a crash and is idempotent. Lab names must not be prefixes of one
// another's: "<lab>-" is the namespace prefix.
//
// With Config.Rootfs (`netd lab up --systemd`) every node is a systemd
// container (systemd-nspawn) in its namespace instead, running the
// netd.service the module renders for it; StartNetd and StopNetd become
// systemctl start and stop, logs are the unit's journal, and Down powers
// the containers off first (systemd.go, container.go).
//
// # Checks
//
// Checks open sockets inside a namespace (a locked OS thread switched with
// setns; the socket keeps the namespace it was created in): ICMP echo on a
// raw socket, TCP echo to a listener in each pod, path MTU with DF set
// (IP_PMTUDISC_PROBE), and a bulk TCP transfer.
package lab
