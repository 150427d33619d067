"""The lab as a client site (the `lab` entry point of `kalab.client_sites`; see kalab.cluster.sites).

The lab's kubeconfig names this plugin with the lab's name and state directory, so a notebook handed that kubeconfig
probes from the lab's bastion (entered through the lab's own tree) and can fail the lab's nodes in every way the
lab supports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalab.lab import faults as fault_bench
from kalab.lab.bastion import bastion_clients
from kalab.lab.control import LabInfo, status_at
from kalab.lab.dataplane import naming
from kalab.lab.running import RunningLab
from kalab.model.clientsite import ClientPlace
from kalab.model.errors import KalabError


@dataclass(frozen=True)
class LabSite:
    state_dir: Path

    def _running(self) -> LabInfo:
        info = status_at(self.state_dir)
        if info.state == "down":
            raise KalabError(f"The lab {info.name} is not running; start it with `kalab lab up --name {info.name}`.")
        return info

    @property
    def clients(self) -> ClientPlace:
        return bastion_clients(self._running().entry(), naming.bastion_ns(naming.DEFAULT_PREFIX))

    @property
    def faults(self) -> LabFaults:
        return LabFaults(status_at(self.state_dir).name)

    def failover_target(self, namespace: str, service: str) -> RunningLab:
        return RunningLab(self._running(), namespace, service)


@dataclass(frozen=True)
class LabFaults:
    """The lab's fault bench (`kalab lab break|heal`) as kalab.cluster.sites.FaultBench."""

    lab: str

    def reproducible(self) -> set[str]:
        return {f.id for f in fault_bench.faults() if f.reproducible}

    def break_fault(self, fault_id: str) -> str:
        return fault_bench.break_fault(self.lab, fault_id)

    def mystery(self) -> str:
        return fault_bench.mystery(self.lab)

    def heal(self) -> list[str]:
        return fault_bench.heal(self.lab)


def lab_site(extension: dict[str, Any]) -> LabSite:
    try:
        return LabSite(Path(str(extension["stateDir"])))
    except KeyError as missing:
        raise KalabError(f"The lab's kubeconfig extension lacks {missing}; restart the lab to rewrite it.") from None
