"""The seed's end state (operator, labels, SCC, CIDRs, demo, VIP) on the session's shared lab, reached through
kalab.cluster.stages, i.e. the same verbs the notebooks use."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kalab.cluster.connect import Cluster
from kalab.lab import control
from tests.support.labs import SharedLab


@dataclass(frozen=True)
class SeededLab:
    info: control.LabInfo
    cluster: Cluster
    vip: str
    state_dir: Path


def seeded_lab(shared: SharedLab) -> SeededLab:
    """The shared lab reset to `deployed`: a node holds the demo's VIP, so clients can reach it."""
    done = shared.at("deployed")
    assert done.vip is not None and done.holder in ("master-1", "master-2"), done
    return SeededLab(shared.info, shared.cluster, done.vip, shared.info.state_dir)
