"""A lab whose controlling process is SIGKILLed leaves nothing behind once it is recovered (or rebuilt)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
from pathlib import Path

from kalab.lab import scenario
from kalab.lab.dataplane import netlink
from tests.support.markers import needs_root_tools

pytestmark = needs_root_tools("keepalived", "iptables-restore", "ip", "curl")
PREFIX = f"kalab-t{os.getpid()}-rc-"

START = f"""
import time
from kalab.lab import scenario
scn = scenario.start(scenario.ScenarioSpec(prefix={PREFIX!r}))
print("ready", scn.state_dir, flush=True)
time.sleep(120)
"""


def processes_mentioning(text: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if text.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                continue
    return found


def host_nat() -> str:
    done = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True, timeout=30)
    return "\n".join(line for line in done.stdout.splitlines() if not line.startswith("#"))


def test_sigkilled_lab_is_swept_clean() -> None:
    nat_before = host_nat()
    lab = subprocess.Popen([sys.executable, "-c", START], stdout=subprocess.PIPE, text=True)
    try:
        assert lab.stdout is not None
        line = lab.stdout.readline()  # the child exits (and the line is empty) if the build fails
        assert line.startswith("ready"), line
        state_dir = line.split()[1]
        assert processes_mentioning(state_dir), "keepalived and the exporters should be running"
        assert any(ns.startswith(PREFIX) for ns in netlink.list_netns())
    finally:
        lab.send_signal(signal.SIGKILL)  # our own child, by PID: the lab dies without cleaning up
        lab.wait(timeout=30)

    removed = scenario.recover(PREFIX)

    assert state_dir in removed
    assert not [ns for ns in netlink.list_netns() if ns.startswith(PREFIX)]
    assert not list(Path(tempfile.gettempdir()).glob(f"{PREFIX}state-*"))
    assert processes_mentioning(state_dir) == []
    assert host_nat() == nat_before
