"""The one call every notebook starts with: the cluster of the kubeconfig given, or else the embedded lab's.

The lab is a plugin (the `lab` entry point of the `kalab.labs` group), as client sites are, so this layer never
imports it: without a kubeconfig the plugin starts the named lab (or finds it running) and hands back its kubeconfig.
"""

from __future__ import annotations

import os
from importlib.metadata import entry_points
from pathlib import Path
from typing import Protocol

from kalab.cluster.connect import Cluster, connect
from kalab.model.errors import KalabError

LABS_ENTRY_POINT_GROUP = "kalab.labs"


class LabStarter(Protocol):
    def __call__(self, name: str | None) -> Path: ...


def _lab_starter() -> LabStarter:
    found = [ep for ep in entry_points(group=LABS_ENTRY_POINT_GROUP) if ep.name == "lab"]
    if not found:
        raise KalabError(
            "No kubeconfig was given and the embedded lab is not installed; pass your cluster's kubeconfig, or "
            "install kalab with its lab (`make setup`)."
        )
    starter: LabStarter = found[0].load()
    return starter


def attach(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None, lab_name: str | None = None
) -> Cluster:
    """Connect to `kubeconfig`'s cluster, or, without one, to the embedded lab `lab_name` (started if not up).

    `lab_name` None means $KALAB_LAB, then "default": each attendee of a class has a lab of their own. With a
    kubeconfig, `lab_name` is not used (a lab's kubeconfig already names its lab).
    """
    if kubeconfig is None:
        kubeconfig = _lab_starter()(lab_name)
    return connect(kubeconfig, context=context)
