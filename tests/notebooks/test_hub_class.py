"""Hosting a class: a real JupyterHub serves three attendees, each their own Unix user, each running the runbook.

The trainer's view of README's "Hosting a class": the hub (root) spawns every attendee's Jupyter server as that
attendee; each attendee runs notebooks 00–03 ("Run All", one kernel per notebook, no parameters changed), so
notebook 00 starts their own lab; all three at the same time. Each then curls their own VIP from their own bastion.
"""

from __future__ import annotations

import json
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.hub import Hub, running_hub
from tests.support.markers import needs_root_tools
from tests.support.users import User, describe, notebooks_copy, processes_of, run_as, shared_venv, throwaway_users
from tests.support.waiting import wait_for

pytestmark = needs_root_tools("keepalived", "iptables-restore", "ip", "curl", "npm", "runuser")

RUNBOOK = ("00-connect", "01-install-operator", "02-externalip-cidr", "03-demo-deploy")
DEMO_BODY = "Hello!<br>Welcome to RedHat Developer"


def run_all(hub: Hub, user: User, notebooks: Path, results: dict[str, str]) -> None:
    """What an attendee does: open each notebook in turn and Run All; the first failing cell stops them."""
    try:
        for name in RUNBOOK:
            kernel = hub.kernel(user.name)
            try:
                failure = kernel.run_notebook(notebooks / f"{name}.ipynb")
                if failure:
                    results[user.name] = failure
                    return
                if name == RUNBOOK[-1]:
                    _, vip = kernel.execute("print(vip)")
                    results[user.name] = f"vip {vip.strip()}"
            finally:
                kernel.close()
    except Exception as err:  # reported by the test, in the main thread
        results[user.name] = f"{type(err).__name__}: {err}"


def test_three_attendees_run_the_runbook_at_once_through_jupyterhub() -> None:
    venv = shared_venv()
    with throwaway_users(3) as attendees, notebooks_copy() as notebooks, running_hub(venv) as hub:
        for user in attendees:
            shutil.copytree(notebooks, user.home / "notebooks")
            shutil.chown(user.home / "notebooks", user.name, user.name)
            for path in (user.home / "notebooks").iterdir():
                shutil.chown(path, user.name, user.name)
        try:
            for user in attendees:
                hub.start_server(user.name)
                pid = hub.server_pid(user.name)
                assert pid is not None and pid in processes_of(user.uid), "each server runs as its attendee"

            results: dict[str, str] = {}
            threads = [
                threading.Thread(target=run_all, args=(hub, user, user.home / "notebooks", results))
                for user in attendees
            ]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(timeout=600)
            assert all(not t.is_alive() for t in threads), "an attendee's runbook did not finish within 10 minutes"
            assert all(results.get(u.name, "").startswith("vip ") for u in attendees), results

            tops = set()
            for user in attendees:
                status = run_as(user, ["kalab", "lab", "status", "--json"], venv=venv)
                lab = json.loads(status.stdout)
                assert lab["state"] == "ready" and lab["name"] == "default", status.stdout + status.stderr
                assert lab["state_dir"].startswith(f"{user.home}/"), "each attendee's lab lives in their own home"
                assert Path(f"/proc/{lab['pid']}").stat().st_uid == user.uid, "and runs as that attendee"
                tops.add(lab["pid"])
                vip = results[user.name].removeprefix("vip ")

                def answered(user: User = user, vip: str = vip) -> bool:
                    # As the seed does after `oc get svc`; keepalived takes a few seconds to elect a MASTER.
                    curl = ["kalab", "lab", "exec", "bastion", "--", "curl", "-s", "-m", "3", f"http://{vip}/"]
                    return run_as(user, curl, venv=venv).stdout.startswith(DEMO_BODY)

                wait_for(answered, 30, f"{user.name}'s VIP {vip} answering from their bastion", 0.3)
            assert len(tops) == 3, "three labs, one per attendee"
        finally:
            for user in attendees:
                run_as(user, ["kalab", "lab", "down"], venv=venv)
                hub.stop_server(user.name)
        for user in attendees:
            # The server ends its kernels as it stops, and `kalab lab down` ended the lab: nothing may be left.
            try:
                wait_for(lambda u=user: not processes_of(u.uid), 30, "the attendee's last process to end", 0.2)
            except AssertionError:
                raise AssertionError(f"{user.name} left {describe(processes_of(user.uid))}") from None


@pytest.fixture(autouse=True)
def _no_namespaces_left() -> Iterator[None]:
    """The labs lived in the attendees' own namespace trees: the host never saw a lab namespace."""
    from kalab.lab.dataplane import netlink

    before = netlink.list_netns()
    yield
    assert set(netlink.list_netns()) <= set(before)
