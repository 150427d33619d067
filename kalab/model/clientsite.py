"""How a kubeconfig says where its cluster's clients live: a named extension on the cluster entry.

A real cluster's kubeconfig has none: clients are this machine. The lab's names a plugin (an entry point in
ENTRY_POINT_GROUP) and its state, so the runbook can probe the lab's VIPs from the lab's bastion namespace, never
from the host, however it was handed the kubeconfig.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

CLIENT_SITE_EXTENSION = "kalab.io/client-site"
ENTRY_POINT_GROUP = "kalab.client_sites"


def site_extension(kubeconfig: dict[str, Any], context: str | None = None) -> dict[str, Any] | None:
    """The client-site extension of `context`'s cluster (default: the current context), or None."""
    name = context or kubeconfig.get("current-context")
    contexts = {c.get("name"): c.get("context") or {} for c in kubeconfig.get("contexts") or []}
    cluster_name = contexts.get(name, {}).get("cluster")
    for entry in kubeconfig.get("clusters") or []:
        if entry.get("name") == cluster_name:
            for ext in (entry.get("cluster") or {}).get("extensions") or []:
                if ext.get("name") == CLIENT_SITE_EXTENSION and isinstance(ext.get("extension"), dict):
                    return dict(ext["extension"])
    return None


@dataclass(frozen=True)
class ClientPlace:
    """Where a cluster's clients run, for a program to be started there: `prefix` is the command line that enters
    that place (empty: this machine); `where` says it in words."""

    where: str = "this machine (the notebook's host)"
    prefix: tuple[str, ...] = ()

    def command(self, argv: Sequence[str]) -> list[str]:
        return [*self.prefix, *argv]


THIS_MACHINE = ClientPlace()
