# The netd scenario: what a node running netd.service from services.netd
# must do, written once and run by two drivers:
#
#   - the NixOS VM test (nixos/tests/vm-netd.nix): VMs booted by nixpkgs'
#     test driver, machines are its Machine objects (needs Nix + KVM; not
#     run on the project machines);
#   - the systemd lab (e2e/systemd_test.go through nixos/tests/labdriver.py):
#     systemd containers in the lab's network namespaces, machines driven
#     with nsenter (runs here and in CI).
#
# Both call run_scenario(t, subtest) with the same steps; only the
# topology t differs (node names, addresses, which pairs take the LAN or
# the overlay). The commands are plain shell (systemctl, journalctl, ip,
# ping, curl, grep) that both a NixOS node and the lab's Debian container
# have. Machines need: succeed(cmd) -> str, fail(cmd) -> str,
# execute(cmd) -> (status, output), wait_until_succeeds(cmd, timeout)
# and wait_until_fails(cmd, timeout), as the NixOS test driver's.
#
# The topology t (a dict):
#   nodes         {name: machine}
#   write_policy  function(variant): writes the policy "original" or
#                 "moved" where every node's /etc/netd/policy.yaml points
#   pairs         [{src, src_ip (None: the node's own), dst_ip, block, dev,
#                 mtu}]: pod traffic that must flow, its route in table 244
#   moved         {src, src_ip, dst_ip, block, still_dst_ip}: the pair the
#                 "moved" policy cuts (dst's block moves elsewhere), and an
#                 address src must still reach meanwhile
#   restart_node  the node whose netd is restarted, killed and frozen
#   status_url    how curl reaches netd's status socket
#   health_url    netd's /healthz

import datetime
import json
import re

UNIT = "netd.service"


def _main_pid(m):
    return int(m.succeed(f"systemctl show -p MainPID --value {UNIT}").strip())


def _invocation(m):
    return m.succeed(f"systemctl show -p InvocationID --value {UNIT}").strip()


def _journal(m, invocation=None):
    """The unit's journal entries (netd's lines and systemd's about it),
    oldest first; only one invocation's when given."""
    out = m.succeed(f"journalctl --no-pager -q -o json -u {UNIT}")
    entries = [json.loads(line) for line in out.splitlines() if line.strip()]
    if invocation:
        entries = [e for e in entries if invocation in (e.get("_SYSTEMD_INVOCATION_ID"), e.get("INVOCATION_ID"))]
    return entries


def _messages(entries):
    return [e.get("MESSAGE") if isinstance(e.get("MESSAGE"), str) else "" for e in entries]


def _sessions_cmd(t, name):
    """A command that succeeds once every other node of the topology is an
    established BGP peer of name (netd's status, read with jq)."""
    others = json.dumps([o for o in t["nodes"] if o != name])
    expr = ('[(.bgp.peers // .bgp.Peers // [])[] | select((.state // .State) == "established") | (.name // .Name)] as $up'
            f' | all({others}[]; . as $n | ($up | map(select(. == $n)) | length) > 0)')
    return f"curl -sf --unix-socket /run/netd/netd.sock {t['status_url']} | jq -e '{expr}' >/dev/null"


def _wait_sessions(t, timeout=120):
    for name, m in t["nodes"].items():
        m.wait_until_succeeds(_sessions_cmd(t, name), timeout=timeout)


def _ping(src_ip, dst_ip, size=None, df=False):
    opts = "-c 1 -W 2"
    if size is not None:
        opts += f" -s {size}"
    if df:
        opts += " -M do"
    if src_ip:
        opts += f" -I {src_ip}"
    return f"ping {opts} {dst_ip}"


_TIME = re.compile(r"(\d{4}-\d\d-\d\d)[T ](\d\d):(\d\d):(\d\d)(?:\.(\d+))?\s*(Z|UTC|[+-]\d\d:?\d\d)")


def _epoch_us(text):
    """Microseconds since the epoch of the first timestamp in text: netd's
    log time (RFC 3339, JSON or logfmt) or systemd's (--timestamp=us+utc)."""
    m = _TIME.search(text)
    assert m, f"no timestamp in {text!r}"
    date, hh, mm, ss, frac, zone = m.groups()
    assert zone in ("Z", "UTC", "+00:00", "+0000"), f"timestamp not in UTC: {text!r}"
    y, mo, d = (int(x) for x in date.split("-"))
    days = (datetime.date(y, mo, d) - datetime.date(1970, 1, 1)).days
    us = int(((frac or "") + "000000")[:6])
    return ((days * 24 + int(hh)) * 60 + int(mm)) * 60 * 1000000 + int(ss) * 1000000 + us


def ready_vs_active(m):
    """(netd's time of "netd ready", logged just before it sends READY=1;
    the time systemd marked the unit active), both in microseconds, for the
    unit's current invocation; None for a missing one."""
    inv = _invocation(m)
    ready = None
    for e in _journal(m, inv):
        msg = e.get("MESSAGE")
        if isinstance(msg, str) and "netd ready" in msg:
            ready = _epoch_us(msg)
            break
    active = m.succeed(f"systemctl show --timestamp=us+utc -p ActiveEnterTimestamp --value {UNIT}").strip()
    started = m.succeed(f"systemctl show --timestamp=us+utc -p ExecMainStartTimestamp --value {UNIT}").strip()
    # An ActiveEnterTimestamp older than the main process is the previous run's.
    if not active or not started or _epoch_us(active) < _epoch_us(started):
        return ready, None
    return ready, _epoch_us(active)


def _assert_ready_before_active(m, name):
    """systemd reported the unit active only once netd was ready
    (Type=notify): netd's "netd ready" precedes the unit's
    ActiveEnterTimestamp. With Type=simple the unit is active at exec,
    long before netd has loaded the policy and run its reconcilers."""
    ready, active = ready_vs_active(m)
    assert ready is not None, f"{name}: netd never logged 'netd ready'"
    assert active is not None, f"{name}: the unit has no ActiveEnterTimestamp"
    assert ready <= active, f"{name}: systemd marked the unit active {(ready - active) / 1000:.1f} ms before netd was ready (Type=notify not honoured)"


def _restarted(m, old_pid, timeout):
    """Waits until the unit is active again with a new main process."""
    m.wait_until_succeeds(
        f"test \"$(systemctl show -p MainPID --value {UNIT})\" != {old_pid} && "
        f"test \"$(systemctl show -p MainPID --value {UNIT})\" != 0 && "
        f"systemctl is-active {UNIT}", timeout=timeout)


def run_scenario(t, subtest):
    nodes = t["nodes"]

    with subtest("netd starts from the module and reaches READY"):
        t["write_policy"]("original")
        for name, m in nodes.items():
            m.succeed(f"systemctl start {UNIT}")  # returns after READY=1 (Type=notify)
            m.succeed(f"systemctl is-active {UNIT}")
            m.succeed("test -S /run/netd/netd.sock")
            m.wait_until_succeeds(f"curl -sf {t['health_url']}", timeout=60)
            _assert_ready_before_active(m, name)

    with subtest("BGP sessions are established"):
        _wait_sessions(t)

    with subtest("pod subnets reachable across nodes at the derived MTU"):
        for p in t["pairs"]:
            m = nodes[p["src"]]
            m.wait_until_succeeds(f"ip route show table 244 {p['block']} | grep -q 'dev {p['dev']}.*mtu {p['mtu']}'", timeout=60)
            m.wait_until_succeeds(_ping(p["src_ip"], p["dst_ip"]), timeout=60)
            payload = p["mtu"] - 28  # IPv4 + ICMP headers
            m.succeed(_ping(p["src_ip"], p["dst_ip"], payload, df=True))
            m.fail(_ping(p["src_ip"], p["dst_ip"], payload + 1, df=True))
        for m in nodes.values():
            # netd's rule sits before tailscaled's 5270 and table 52 is untouched.
            m.succeed("ip rule show | grep -q '^5260:.*lookup 244'")
            m.succeed("ip rule show | grep -q '^5270:.*lookup 52'")

    with subtest("a policy change blocks traffic, reverting it restores it"):
        mv = t["moved"]
        src = nodes[mv["src"]]
        pid_before = _main_pid(src)
        t["write_policy"]("moved")
        for m in nodes.values():
            m.succeed(f"systemctl reload {UNIT}")
        src.wait_until_succeeds(f"! ip route show table 244 | grep -q '^{mv['block']}'", timeout=60)
        src.wait_until_fails(_ping(mv["src_ip"], mv["dst_ip"]), timeout=60)
        # The reload applied the new policy in place: same process.
        assert _main_pid(src) == pid_before, "systemctl reload restarted netd"
        src.succeed(_ping(mv["src_ip"], mv["still_dst_ip"]))

        t["write_policy"]("original")
        for m in nodes.values():
            m.succeed(f"systemctl reload {UNIT}")
        src.wait_until_succeeds(f"ip route show table 244 {mv['block']} | grep -q mtu", timeout=60)
        src.wait_until_succeeds(_ping(mv["src_ip"], mv["dst_ip"]), timeout=60)
        _wait_sessions(t)

    with subtest("the unit is hardened as the module says"):
        for m in nodes.values():
            m.succeed(f"systemctl show -p NoNewPrivileges --value {UNIT} | grep -qx yes")
            m.succeed(f"systemctl show -p ProtectSystem --value {UNIT} | grep -qx strict")
            m.succeed(f"systemctl show -p User --value {UNIT} | grep -qx netd")
            # A dynamic user, not root, holding exactly NET_ADMIN, NET_RAW
            # and NET_BIND_SERVICE.
            m.succeed(f"test \"$(stat -c %U /proc/$(systemctl show -p MainPID --value {UNIT}))\" = netd")
            m.succeed(f"grep -q '^CapEff:.*0000000000003400$' /proc/$(systemctl show -p MainPID --value {UNIT})/status")

    r = nodes[t["restart_node"]]
    rname = t["restart_node"]

    with subtest("systemctl restart keeps the graceful-stop marker"):
        # Stop (graceful: the marker in /run/netd, kept across the restart by
        # RuntimeDirectoryPreserve=restart), start: the new netd finds the
        # marker and restarts with the graceful restart R-bit.
        old = _main_pid(r)
        r.succeed(f"systemctl restart {UNIT}")
        assert _main_pid(r) != old
        msgs = _messages(_journal(r, _invocation(r)))
        assert any("previous netd stopped gracefully" in s for s in msgs), f"{rname}: the restarted netd did not find the graceful-stop marker: {msgs[:15]}"
        _wait_sessions(t)

    with subtest("a netd killed with SIGKILL is restarted by Restart="):
        old = _main_pid(r)
        r.succeed(f"kill -9 {old}")
        _restarted(r, old, timeout=60)
        out = r.succeed(f"journalctl --no-pager -q -u {UNIT} -o cat")
        assert "status=9/KILL" in out, f"{rname}: systemd did not log the SIGKILL"
        _wait_sessions(t)

    with subtest("a frozen netd is killed and restarted by the watchdog"):
        old = _main_pid(r)
        r.succeed(f"kill -STOP {old}")
        # WatchdogSec=30s: systemd aborts the frozen process (SIGABRT, then
        # SIGCONT) and Restart= starts a new one.
        _restarted(r, old, timeout=90)
        out = r.succeed(f"journalctl --no-pager -q -u {UNIT} -o cat")
        assert "Watchdog timeout" in out, f"{rname}: systemd did not log a watchdog timeout"
        _wait_sessions(t)
