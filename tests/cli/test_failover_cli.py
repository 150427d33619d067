"""`kalab failover` and `kalab probe` as a user runs them: real data plane, JSON out, one-sentence errors."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from kalab.lab.dataplane import netlink, procfs
from tests.support.kalabcli import run_kalab as kalab
from tests.support.markers import needs_lab_tools
from tests.support.waiting import wait_for


@needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
def test_failover_json_reports_every_field_the_notebooks_plot() -> None:
    host_namespaces = netlink.list_netns()
    done = kalab("failover", "--kind", "link-down", "--advert-int", "0.1", "--vrrp-version", "3", "--json")
    assert done.returncode == 0, done.stderr
    (trial,) = json.loads(done.stdout)
    for key in ("outage_ms", "lost", "old_master", "new_master", "expected_ms", "duplicate_vip_ms"):
        assert key in trial
    assert trial["old_master"] != trial["new_master"]
    assert trial["expected_ms"] == pytest.approx(360.9, abs=0.1)
    assert 0 < trial["outage_ms"] < 1000
    assert "Traceback" not in done.stderr
    assert set(netlink.list_netns()) <= set(host_namespaces)  # the throwaway data plane lived in a tree of its own


@needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
def test_probe_of_the_demo_scenario_sees_both_pods() -> None:
    host_namespaces = netlink.list_netns()
    done = kalab("probe", "--scenario", "--for", "1", "--rate", "200", "--json")
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["failed"] == 0
    assert summary["requests"] == 200
    assert len(summary["backends"]) == 2
    assert set(netlink.list_netns()) <= set(host_namespaces)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["failover", "--kind", "graceful", "--advert-int", "0.5"], "needs VRRP version 3"),
        (["failover", "--kind", "crash", "--trials", "0"], "between 1 and 50"),
        (["failover", "--kind", "meltdown"], "invalid choice"),
        (["probe", "--for", "1"], "Give the URL to probe"),
        (["probe", "ftp://172.21.6.50/", "--for", "1"], "http"),
        (["probe", "http://172.21.6.50/", "--for", "100000"], "600"),
        (["probe", "http://172.21.6.50/", "--for", "1", "--name", "t-no-such-lab"], "No lab is running"),
    ],
)
def test_bad_requests_get_one_sentence(argv: list[str], needle: str) -> None:
    done = kalab(*argv, timeout=60)
    assert done.returncode != 0
    assert done.stderr.count("\n") == 1, done.stderr
    assert needle in done.stderr
    assert "Traceback" not in done.stderr


def _tree_of(command: subprocess.Popen[str]) -> set[tuple[int, int]]:
    """Once it exists: the private tree `command` re-ran itself in (its unshare and everything in its PID namespace)."""
    unshare = [pid for pid in procfs.children(command.pid) if "unshare" in Path(f"/proc/{pid}/comm").read_text()]
    tops = procfs.children(unshare[0]) if unshare else []
    if not tops:
        return set()
    namespace = procfs.pid_namespace(tops[0])
    members = procfs.pid_namespace_members(namespace) if namespace else []
    found = {(pid, procfs.starttime(pid)) for pid in [unshare[0], *members]}
    return {(pid, start) for pid, start in found if start is not None}


@needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "ctrl-c"])
def test_an_interrupted_throwaway_failover_leaves_nothing_behind(sig: signal.Signals) -> None:
    host_namespaces = netlink.list_netns()
    command = subprocess.Popen(
        [sys.executable, "-m", "kalab", "failover", "--scenario", "--kind", "graceful", "--trials", "5"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, so Ctrl-C reaches it and its tree as a terminal's would
    )
    try:
        # Interrupted while its data plane runs: keepalived and the demo pods are up by then.
        tree = wait_for(lambda: (t := _tree_of(command)) and len(t) > 8 and t, 30, "the scenario's tree to fill")
        if sig == signal.SIGINT:
            os.killpg(command.pid, sig)
        else:
            command.send_signal(sig)
        _, stderr = command.communicate(timeout=30)
    finally:
        if command.poll() is None:
            command.kill()
            command.communicate()
    wait_for(lambda: not {p for p, s in tree if procfs.starttime(p) == s}, 5, "every process of the tree to end")
    assert set(netlink.list_netns()) <= set(host_namespaces)
    assert "Traceback" not in stderr
    # SIGTERM ends it as Ctrl-C does, so its `finally` blocks ran (the trial's repair, the scenario's close).
    assert command.returncode == 130 and stderr.strip().splitlines()[-1] == "kalab: interrupted."
