"""What every runbook notebook does first: show errors as sentences, and attach to its cluster."""

from __future__ import annotations

import os

import pandas as pd

from kalab.cluster import attach as cluster_attach
from kalab.cluster.connect import Cluster
from kalab.ui.checks import install_error_display


def attach(
    kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None, lab_name: str | None = None
) -> Cluster:
    """The notebook's cluster: `kubeconfig`'s, or else the embedded lab `lab_name` (started if it is not up).

    It also makes this kernel show every kalab error as one ❌ sentence instead of a traceback, and lets tables show
    whole sentences (the runbook's tables hold reasons and commands, which pandas would cut at 50 characters).
    """
    install_error_display()
    pd.set_option("display.max_colwidth", None)
    return cluster_attach.attach(kubeconfig, context=context, lab_name=lab_name)
