"""Where a cluster's clients run: the place probes and failover experiments send their requests from.

For a real cluster that is this machine, and the only failure within reach is a graceful one (through the API).
A kubeconfig can name another site in its `kalab.io/client-site` extension; the lab's does, so its VIPs are probed
from its bastion namespace — never from the host — and its failovers can crash keepalived or cut a node's link.
Sites other than this machine are plugins (entry points in the `kalab.client_sites` group), so this layer never
imports the lab.
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
import yaml

from kalab.cluster.apitarget import ApiTarget
from kalab.cluster.connect import Cluster
from kalab.cluster.failover import FailoverTarget
from kalab.cluster.probejob import probe_timeline
from kalab.model.clientsite import (
    CLIENT_SITE_EXTENSION,
    ENTRY_POINT_GROUP,
    THIS_MACHINE,
    ClientPlace,
    site_extension,
)
from kalab.model.errors import KalabError


class FaultBench(Protocol):
    """Faults of the troubleshooting catalog broken for real, where the site can (the lab's `kalab lab break`)."""

    def reproducible(self) -> set[str]: ...

    def break_fault(self, fault_id: str) -> str: ...

    def mystery(self) -> str: ...

    def heal(self) -> list[str]: ...


class SitePlugin(Protocol):
    """What a plugin gives: where clients run, a failover target for a service, its state and its faults."""

    @property
    def clients(self) -> ClientPlace: ...

    @property
    def state_dir(self) -> Path: ...

    @property
    def faults(self) -> FaultBench: ...

    def failover_target(self, namespace: str, service: str) -> FailoverTarget: ...


@dataclass(frozen=True)
class Site:
    """A cluster's client site: probe a URL from it, or get a failover target for a service."""

    cluster: Cluster
    plugin: SitePlugin | None = None  # None: this machine

    @property
    def clients(self) -> ClientPlace:
        return self.plugin.clients if self.plugin else THIS_MACHINE

    @property
    def where(self) -> str:
        return self.clients.where

    @property
    def state_dir(self) -> Path | None:
        """Where the site keeps local state (undo journals); None for this machine (see network.default_journal)."""
        return self.plugin.state_dir if self.plugin else None

    @property
    def faults(self) -> FaultBench | None:
        """The site's fault bench; None for a real cluster, which is only ever diagnosed, never broken."""
        return self.plugin.faults if self.plugin else None

    def probe(self, url: str, duration: float, rate: float, timeout: float = 1.0) -> pd.DataFrame:
        """Requests to `url` for `duration` s at `rate`/s from this site; one row each (see kalab.cluster.prober)."""
        return probe_timeline(url, duration, rate, timeout, self.clients)

    def failover_target(self, namespace: str = "demo", service: str = "demo") -> FailoverTarget:
        """The service's VIP as a failover target: the plugin's if it has one, else through the API."""
        if self.plugin is not None:
            return self.plugin.failover_target(namespace, service)
        return ApiTarget(self.cluster, namespace, service)


def _load_plugin(extension: dict[str, Any]) -> SitePlugin:
    name = str(extension.get("plugin", ""))
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == name]
    if not found:
        raise KalabError(
            f'The kubeconfig names client site "{name}", which no installed package provides; reinstall kalab '
            f"(`make test` or `pip install -e .`) or remove the {CLIENT_SITE_EXTENSION} extension."
        )
    plugin: SitePlugin = found[0].load()(extension)
    return plugin


def site_for(cluster: Cluster) -> Site:
    """The client site the cluster's kubeconfig names, or this machine when it names none."""
    if cluster.kubeconfig is None:
        return Site(cluster)
    try:
        config = yaml.safe_load(cluster.kubeconfig.read_text()) or {}
    except (OSError, yaml.YAMLError) as err:
        raise KalabError(f"Cannot read the kubeconfig {cluster.kubeconfig} again ({err}); reconnect.") from None
    extension = site_extension(config, cluster.context) if isinstance(config, dict) else None
    return Site(cluster, _load_plugin(extension)) if extension else Site(cluster)
