"""kalab as an ordinary Unix user (issue 9): a throwaway user, created here, runs labs and the throwaway failover
scenario with no sudo, from a venv of Debian's Python, and leaves no process and no namespace behind."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.markers import needs_root_tools
from tests.support.users import User, notebooks_copy, processes_of, run_as, shared_venv, throwaway_users

pytestmark = needs_root_tools("keepalived", "iptables-restore", "ip", "curl", "unshare", "nsenter", "useradd")


def host_netns() -> list[str]:
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True, timeout=30).stdout
    return [line.split()[0] for line in listed.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def user() -> Iterator[User]:
    shared_venv()  # built before the user exists, so its minute is not spent with a user around
    with throwaway_users(1) as (made,):
        yield made


def kalab_as(user: User, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return run_as(user, ["kalab", *argv], venv=shared_venv(), timeout=timeout)


def test_an_ordinary_user_runs_a_lab_without_sudo(user: User) -> None:
    netns_before = host_netns()
    assert json.loads(kalab_as(user, "lab", "list", "--json").stdout) == []  # a new user has no labs

    started = kalab_as(user, "lab", "up", "--name", "x")
    assert started.returncode == 0, started.stderr + started.stdout
    kubeconfig = re.search(r"KUBECONFIG=(\S+)", started.stdout)
    assert kubeconfig and kubeconfig.group(1).startswith(f"{user.home}/"), started.stdout

    info = json.loads(kalab_as(user, "lab", "status", "--name", "x", "--json").stdout)
    assert info["state"] == "ready"
    top_uids = Path(f"/proc/{info['pid']}/status").read_text().split("Uid:")[1].split()[:4]
    assert top_uids == [str(user.uid)] * 4  # root in its tree only: the host sees the user

    addr = kalab_as(user, "lab", "exec", "--name", "x", "bastion", "--", "ip", "-br", "addr")
    assert addr.returncode == 0, addr.stderr
    assert "192.168.7.1/24" in addr.stdout, addr.stdout
    # A node's tools live in sbin, which an ordinary user's PATH lacks; `lab exec` finds them as on a node.
    nat = kalab_as(user, "lab", "exec", "--name", "x", "master-0", "--", "iptables-save", "-t", "nat")
    assert nat.returncode == 0 and ":KUBE-SERVICES" in nat.stdout, nat.stderr
    assert set(host_netns()) <= set(netns_before)

    stopped = kalab_as(user, "lab", "down", "--name", "x")
    assert stopped.returncode == 0 and "is down" in stopped.stdout, stopped.stderr + stopped.stdout
    assert processes_of(user.uid) == []
    assert set(host_netns()) <= set(netns_before)


def test_the_throwaway_failover_scenario_runs_as_an_ordinary_user(user: User) -> None:
    netns_before = host_netns()
    done = kalab_as(user, "failover", "--kind", "graceful", "--trials", "1", "--json", timeout=300)
    assert done.returncode == 0, done.stderr + done.stdout
    assert "No lab is running" in done.stderr  # it built its own data plane, in a private tree
    (trial,) = json.loads(done.stdout)
    assert trial["old_master"] != trial["new_master"], trial
    assert 0 < trial["takeover_ms"] < 5000, trial
    assert processes_of(user.uid) == []
    assert set(host_netns()) <= set(netns_before)


def test_the_whole_runbook_runs_as_an_ordinary_user(user: User) -> None:
    """What `make demo` runs (`kalab run --lab`: notebooks 00–06 on a fresh lab, then down), without sudo."""
    with notebooks_copy() as notebooks:
        done = kalab_as(user, "run", "--lab", "--notebooks", str(notebooks), "--out", "demo", timeout=900)
    assert done.returncode == 0, done.stderr + done.stdout[-3000:]
    summary = json.loads((user.home / "demo" / "summary.json").read_text())
    compared = summary["failover"]["comparison"]
    kinds = [(f["kind"], f["advert_int"]) for f in compared]
    assert kinds == [("graceful", 1.0), ("crash", 1.0), ("link-down", 1.0), ("link-down", 0.1)], compared
    assert all(f["takeover_ms"] is not None and f["takeover_ms"] > 0 for f in compared), compared
    assert summary["traffic"]["failed"] == 0 and len(summary["traffic"]["pods"]) == 2, summary["traffic"]
    assert "lab default stopped" in done.stdout
    assert processes_of(user.uid) == []
