#!/usr/bin/env python3
"""Runs the netd scenario (netd_scenario.py, shared with the NixOS VM test)
on the systemd lab: `netd lab up --systemd` nodes, each a systemd container
in its network namespace, driven from the host with nsenter.

  labdriver.py TOPOLOGY.json

e2e/systemd_test.go writes TOPOLOGY.json from the lab's state:

  {"nodes": {name: pid of the container's systemd},
   "policy_path": the policy file every container's /etc/netd/policy.yaml
                  points at (host path),
   "policies": {"original": text, "moved": text},
   "pairs": [...], "moved": {...}, "restart_node": name,
   "status_url": ..., "health_url": ...}   (see netd_scenario.py)

The machines offer what the scenario uses of the NixOS test driver's
Machine (succeed, fail, execute, wait_until_succeeds, wait_until_fails),
with the same semantics. Prints one line per subtest ("ok - NAME (took)"
or "not ok - NAME: why") and exits non-zero on the first failure.
"""
import contextlib
import importlib.util
import json
import os
import subprocess
import sys
import time
import traceback

ENV = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LANG": "C.UTF-8", "SYSTEMD_PAGER": "", "SYSTEMD_COLORS": "0"}


class Machine:
    """A lab node's container: commands run in every namespace of its
    systemd (nsenter -a), as root, in /bin/sh."""

    def __init__(self, name, leader):
        self.name, self.leader = name, leader

    def execute(self, command, timeout=120):
        p = subprocess.run(["nsenter", "-t", str(self.leader), "-a", "--", "sh", "-c", command],
                           capture_output=True, text=True, timeout=timeout, env=ENV)
        return p.returncode, p.stdout + (p.stderr if p.returncode != 0 else "")

    def succeed(self, command, timeout=120):
        rc, out = self.execute(command, timeout)
        if rc != 0:
            raise AssertionError(f"{self.name}: command failed (status {rc}): {command}\n{out.strip()}")
        return out

    def fail(self, command, timeout=120):
        rc, out = self.execute(command, timeout)
        if rc == 0:
            raise AssertionError(f"{self.name}: command succeeded but should have failed: {command}\n{out.strip()}")
        return out

    def _wait(self, command, want_ok, timeout):
        deadline = time.monotonic() + timeout
        while True:
            rc, out = self.execute(command, timeout=max(5, timeout))
            if (rc == 0) == want_ok:
                return out
            if time.monotonic() > deadline:
                state = "succeed" if want_ok else "fail"
                raise AssertionError(f"{self.name}: command did not {state} within {timeout}s: {command}\n{out.strip()}")
            time.sleep(0.2)  # the retry interval of a poll with a deadline

    def wait_until_succeeds(self, command, timeout=900):
        return self._wait(command, True, timeout)

    def wait_until_fails(self, command, timeout=900):
        return self._wait(command, False, timeout)


@contextlib.contextmanager
def subtest(name):
    start = time.monotonic()
    try:
        yield
    except Exception as e:
        print(f"not ok - {name}: {type(e).__name__}: {e}", flush=True)
        raise
    print(f"ok - {name} ({time.monotonic() - start:.1f}s)", flush=True)


def main():
    topo = json.load(open(sys.argv[1]))
    here = os.path.dirname(os.path.abspath(__file__))
    spec = importlib.util.spec_from_file_location("netd_scenario", os.path.join(here, "netd_scenario.py"))
    scenario = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scenario)

    def write_policy(variant):
        path = topo["policy_path"]
        with open(path + ".new", "w") as f:
            f.write(topo["policies"][variant])
        os.chmod(path + ".new", 0o644)
        os.rename(path + ".new", path)

    t = dict(topo)
    t["nodes"] = {name: Machine(name, pid) for name, pid in topo["nodes"].items()}
    t["write_policy"] = write_policy
    try:
        scenario.run_scenario(t, subtest)
    except Exception:
        traceback.print_exc()
        sys.exit(1)


if __name__ == "__main__":
    main()
