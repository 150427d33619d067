"""The lab as a client site (the `lab` entry point of `kalab.client_sites`; see kalab.cluster.sites).

The lab's kubeconfig names this plugin with its state directory, so a notebook handed that kubeconfig probes from the
bastion namespace and can fail the lab's nodes in every way the lab supports.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalab.lab.control import read_info
from kalab.lab.dataplane import naming
from kalab.lab.running import RunningLab
from kalab.model.errors import KalabError


@dataclass(frozen=True)
class LabSite:
    state_dir: Path
    prefix: str

    @property
    def where(self) -> str:
        return f"the lab's bastion (network namespace {self.client_netns}: 192.168.7.1, 172.21.6.10)"

    @property
    def client_netns(self) -> str:
        return naming.bastion_ns(self.prefix)

    def failover_target(self, namespace: str, service: str) -> RunningLab:
        info = read_info(self.state_dir)
        if info is None:
            raise KalabError(f"The lab in {self.state_dir} is not running; start it with `kalab lab up`.")
        return RunningLab(info, namespace, service)


def lab_site(extension: dict[str, Any]) -> LabSite:
    try:
        return LabSite(Path(str(extension["stateDir"])), naming.check_prefix(str(extension["prefix"])))
    except KeyError as missing:
        raise KalabError(f"The lab's kubeconfig extension lacks {missing}; restart the lab to rewrite it.") from None
