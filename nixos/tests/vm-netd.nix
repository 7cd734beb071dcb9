# Multi-node NixOS VM test: a headscale control server and three nodes
# running tailscaled and netd from services.netd.
#
#   nix build .#checks.x86_64-linux.vm-netd -L      (or `nix flake check`)
#
# NOT RUN on the project machines (no nixpkgs, no KVM there); it runs where
# Nix, the internet (for nixpkgs) and preferably KVM exist.
#
# Topology (every VM is also on the test VLAN 192.168.1.0/24, eth1):
#   headscale  control server behind nginx TLS, embedded DERP (all offline)
#   n1, n2     site "home": a LAN address in the policy, so pod traffic
#              between them takes the direct LAN path (MTU 1500)
#   n3         site "cloud": no LAN address, reached over tailscale0 (MTU 1280)
# Each node's "pod subnet" is a dummy interface pod0 holding 10.244.<i>.1/24;
# pings use that address as source, as a pod's packets would.
#
# What it asserts is nixos/tests/netd_scenario.py, the scenario the
# systemd lab also runs (`netd lab up --systemd` containers, in CI):
#   1. every netd reaches READY (Type=notify): systemd marks the unit
#      active only after netd is ready;
#   2. all BGP sessions (full mesh, over the tailnet addresses) are
#      established;
#   3. pod-subnet reachability across nodes at the derived MTU: over the
#      overlay, 1280-byte packets with DF pass and 1281 do not, and netd's
#      route in table 244 carries `mtu 1280`; on the LAN path 1500 passes
#      and the route carries `mtu 1500`;
#   4. a policy change blocks and restores traffic: moving n2's pod block
#      in the policy (systemctl reload netd = SIGHUP on every node) makes
#      netd withdraw 10.244.2.0/24 and n1 loses reachability to it;
#      restoring the policy brings the route and the traffic back; the
#      reload keeps the same process;
#   5. the unit is hardened as the module says (dynamic user, capabilities);
#   6. systemctl restart keeps the graceful-stop marker (/run/netd);
#   7. a netd killed with SIGKILL is restarted by Restart=;
#   8. a frozen netd (SIGSTOP) is killed and restarted by the watchdog.
{ self }:
{ pkgs, lib, ... }:
let
  tls-cert = pkgs.runCommand "headscale-selfsigned" { nativeBuildInputs = [ pkgs.openssl ]; } ''
    openssl req -x509 -newkey rsa:2048 -sha256 -days 365 -nodes \
      -out cert.pem -keyout key.pem \
      -subj '/CN=headscale' -addext "subjectAltName=DNS:headscale"
    mkdir -p $out
    cp key.pem cert.pem $out
  '';

  # The policy is written by the test script once the tailnet addresses
  # are known (headscale assigns them); netd reads it from here.
  policyPath = "/var/lib/netd-test/policy.yaml";

  node = { ... }: {
    # The module itself, not nixosModules.netd: runNixOSTest gives every
    # node the test's pkgs read-only (node.pkgs), so a module that adds an
    # overlay (as nixosModules.netd does for pkgs.netd) is an error there.
    imports = [ ../modules/netd.nix ];
    services.netd.package = self.packages.${pkgs.stdenv.hostPlatform.system}.netd;
    virtualisation.vlans = [ 1 ];
    security.pki.certificateFiles = [ "${tls-cert}/cert.pem" ];
    services.tailscale.enable = true;
    services.netd = {
      enable = true;
      policyFile = policyPath;
      openFirewall = true;
      logLevel = "debug";
    };
    # Started by the script once the policy exists.
    systemd.services.netd.wantedBy = lib.mkForce [ ];
    boot.kernel.sysctl = {
      "net.ipv4.ip_forward" = 1;
      "net.ipv4.conf.all.rp_filter" = 2;
      "net.ipv4.conf.default.rp_filter" = 2;
    };
    networking.firewall.checkReversePath = "loose";
    environment.systemPackages = [ pkgs.curl pkgs.jq pkgs.iproute2 ];
  };
in
{
  name = "netd-bgp-over-tailscale";

  nodes = {
    headscale = {
      virtualisation.vlans = [ 1 ];
      services.headscale = {
        enable = true;
        port = 8080;
        settings = {
          server_url = "https://headscale";
          dns.base_domain = "tailnet";
          derp.server = {
            enabled = true;
            region_id = 999;
            stun_listen_addr = "0.0.0.0:3478";
          };
        };
      };
      services.nginx = {
        enable = true;
        virtualHosts.headscale = {
          addSSL = true;
          sslCertificate = "${tls-cert}/cert.pem";
          sslCertificateKey = "${tls-cert}/key.pem";
          locations."/" = {
            proxyPass = "http://127.0.0.1:8080";
            proxyWebsockets = true;
          };
        };
      };
      networking.firewall = {
        allowedTCPPorts = [ 80 443 ];
        allowedUDPPorts = [ 3478 ];
      };
      environment.systemPackages = [ pkgs.headscale pkgs.jq ];
    };
    n1 = node;
    n2 = node;
    n3 = node;
  };

  testScript = ''
    import json

    policy_template = open("${./vm-policy.yaml.in}").read()
    nodes = {"n1": n1, "n2": n2, "n3": n3}
    index = {"n1": 1, "n2": 2, "n3": 3}

    start_all()
    headscale.wait_for_unit("headscale")
    headscale.wait_for_open_port(443)
    headscale.succeed("headscale users create test")
    # headscale >= 0.26 takes the user's ID, older versions its name.
    authkey = headscale.succeed(
        "headscale preauthkeys -u 1 create --reusable || headscale preauthkeys -u test create --reusable"
    ).strip().splitlines()[-1]

    def approve_routes(name, prefix):
        hs = json.loads(headscale.succeed("headscale nodes list -o json"))
        node_id = next(n["id"] for n in hs if n.get("given_name", n.get("name")) == name or n.get("name") == name)
        # headscale >= 0.26: approve on the node; older: enable the route.
        rc, _ = headscale.execute(f"headscale nodes approve-routes --identifier {node_id} --routes {prefix}")
        if rc != 0:
            routes = json.loads(headscale.succeed("headscale routes list -o json"))
            rid = next(r["id"] for r in routes if r["prefix"] == prefix)
            headscale.succeed(f"headscale routes enable -r {rid}")

    # Pod subnets, then join the tailnet one node at a time (addresses are
    # handed out in order). n1 and n3 advertise their pod blocks to
    # Tailscale: the overlay path needs them as approved subnet routes. n2's
    # block is reached only on the LAN path, so only netd's route leads to
    # it: that is what the policy-change step removes and restores.
    overlay = {}
    lan = {}
    for name, m in nodes.items():
        i = index[name]
        m.wait_for_unit("tailscaled.service")
        m.succeed(f"ip link add pod0 type dummy && ip addr add 10.244.{i}.1/24 dev pod0 && ip link set pod0 up")
        adv = f"--advertise-routes=10.244.{i}.0/24" if name != "n2" else ""
        m.succeed(f"tailscale up --login-server https://headscale --auth-key {authkey} --hostname {name} --accept-routes {adv}")
        overlay[name] = m.succeed("tailscale ip -4").strip()
        lan[name] = m.succeed("ip -4 -o addr show dev eth1 | awk '{print $4}' | cut -d/ -f1").strip()
        if name != "n2":
            approve_routes(name, f"10.244.{i}.0/24")

    def policy(n2_block):
        return (policy_template
                .replace("@N1_OVERLAY@", overlay["n1"]).replace("@N2_OVERLAY@", overlay["n2"])
                .replace("@N3_OVERLAY@", overlay["n3"]).replace("@N1_LAN@", lan["n1"])
                .replace("@N2_LAN@", lan["n2"]).replace("@N2_BLOCK@", n2_block))

    # The scenario itself is shared with the systemd lab (netd lab up
    # --systemd, e2e/systemd_test.go): same steps, this test's topology.
    exec(open("${./netd_scenario.py}").read())

    def write_policy(variant):
        text = policy("10.244.2.0/24" if variant == "original" else "10.244.20.0/24")
        for m in nodes.values():
            m.succeed("mkdir -p /var/lib/netd-test && cat > ${policyPath}.new <<'EOF'\n" + text + "\nEOF\n"
                      "mv ${policyPath}.new ${policyPath}")

    run_scenario({
        "nodes": nodes,
        "write_policy": write_policy,
        # Pod traffic from each node's pod0 address: n1 <-> n3 over the
        # overlay (MTU 1280), n1 -> n2 on the LAN path (MTU 1500).
        "pairs": [
            {"src": "n1", "src_ip": "10.244.1.1", "dst_ip": "10.244.3.1", "block": "10.244.3.0/24", "dev": "tailscale0", "mtu": 1280},
            {"src": "n3", "src_ip": "10.244.3.1", "dst_ip": "10.244.1.1", "block": "10.244.1.0/24", "dev": "tailscale0", "mtu": 1280},
            {"src": "n1", "src_ip": "10.244.1.1", "dst_ip": "10.244.2.1", "block": "10.244.2.0/24", "dev": "eth1", "mtu": 1500},
        ],
        # Moving n2's block in the policy withdraws 10.244.2.0/24; only
        # netd's LAN route led there, so n1 loses it; n3 stays reachable.
        "moved": {"src": "n1", "src_ip": "10.244.1.1", "dst_ip": "10.244.2.1", "block": "10.244.2.0/24", "still_dst_ip": "10.244.3.1"},
        "restart_node": "n1",
        "status_url": "http://netd/status",
        "health_url": "http://127.0.0.1:9180/healthz",
    }, subtest)
  '';
}
