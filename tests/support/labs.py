"""A whole lab (`kalab lab up --name …`) for a test module, taken down afterwards with nothing left behind."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kalab.cluster import network, stages
from kalab.cluster.connect import Cluster, connect
from kalab.lab import control, faults
from kalab.lab.dataplane import netlink, procfs


def processes_mentioning(text: str) -> list[int]:
    """Live processes whose command line contains `text` (e.g. a lab's state directory, which its daemon names)."""
    found = []
    for pid in procfs.all_pids():
        try:
            if text.encode() in Path(f"/proc/{pid}/cmdline").read_bytes() and procfs.starttime(pid) is not None:
                found.append(pid)
        except OSError:  # ended meanwhile
            continue
    return found


@contextmanager
def running_lab(name: str) -> Iterator[control.LabInfo]:
    """The lab `name`, started (under the session's KALAB_HOME, see tests/conftest.py); afterwards its state directory,
    its top process and every process of its PID namespace must be gone, and no named network namespace may have
    appeared on the host (the lab keeps its own)."""
    host_namespaces = netlink.list_netns()
    info: control.LabInfo | None = None
    pid_ns: tuple[int, int] | None = None
    try:
        info = control.up(name)
        assert info.ready and info.name == name and info.pid is not None
        assert info.state_dir == control.state_dir(name) and info.state_dir.is_relative_to(control.labs_home())
        pid_ns = procfs.pid_namespace(info.pid)
        assert pid_ns is not None and pid_ns != procfs.pid_namespace(os.getpid()), "the lab needs its own PID ns"
        yield info
    finally:
        control.down(name)
        assert not control.state_dir(name).exists()
        assert control.status(name).state == "down"
        if info is not None and info.pid is not None:
            assert procfs.starttime(info.pid) is None, f"the lab's top process {info.pid} outlived `down`"
        if pid_ns is not None:
            assert procfs.pid_namespace_members(pid_ns) == [], "processes of the lab outlived `down`"
        # Only a namespace that appeared counts: one that vanished meanwhile belonged to another run on the machine.
        assert set(netlink.list_netns()) <= set(host_namespaces), "the lab left a named network namespace on the host"


@dataclass(frozen=True)
class SharedLab:
    """A lab several test modules take turns on, each bringing it to the runbook stage it needs first."""

    info: control.LabInfo
    cluster: Cluster
    # The seed's CIDRs in their network form (notebook 02 writes 172.21.6.33/27; both name the same block).
    runbook: stages.Runbook

    def at(self, stage: str) -> stages.Reset:
        """Heal what `kalab lab break` left broken (a module that failed half-way), then reset to `stage`."""
        faults.heal(self.info.name)
        return stages.reset(self.cluster, stage, self.runbook)


def shared_lab_named(name: str) -> Iterator[SharedLab]:
    with running_lab(name) as info:
        cluster = connect(str(info.kubeconfig))
        journal = network.journal_for(cluster)  # where notebook 02 keeps it
        runbook = stages.Runbook(journal, allowed_cidr="172.21.6.32/27", auto_assign_cidr="172.21.6.32/27", timeout=60)
        yield SharedLab(info, cluster, runbook)
