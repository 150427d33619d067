"""The markers of kernel-backed tests: those that need root, and those that only start labs through kalab.

A lab is rootless (kalab/lab/dataplane/tree.py), so a test that starts one through kalab needs the lab's tools and
a machine that lets this user make a namespace tree, not root. Only a test that creates Unix users or builds
namespaces, links or rules directly among the host's needs root.
"""

from __future__ import annotations

import functools
import os
import shutil

import pytest

from kalab.lab import prerequisites
from kalab.lab.dataplane.tree import with_sbin


def _not_installed(tools: tuple[str, ...]) -> list[str]:
    search = with_sbin(os.environ.get("PATH", ""))  # as the lab looks: an ordinary user's PATH lacks sbin
    missing = [t for t in tools if shutil.which(t, path=search) is None]
    return [f"{', '.join(missing)} (not installed)"] if missing else []


def _skip_unless_ready(lacking: list[str], reason: str) -> pytest.MarkDecorator:
    # In CI the set-up installs everything, so a missing tool must fail loudly rather than skip quietly.
    return pytest.mark.skipif(bool(lacking) and not os.environ.get("CI"), reason=reason)


def needs_root_tools(*tools: str) -> pytest.MarkDecorator:
    """Tests that build in the host's namespaces or create users need root and the Debian tools `make test`
    installs: without either they skip, saying which is lacking."""
    lacking = [] if os.geteuid() == 0 else [f"root (this is uid {os.geteuid()})"]
    lacking += _not_installed(tools)
    reason = f"needs root and {', '.join(tools)}; lacks {' and '.join(lacking)}: `make test` as root runs it"
    return _skip_unless_ready(lacking, reason)


@functools.cache
def _lab_problem() -> str | None:
    return prerequisites.lab_problem()  # tries a namespace tree once per session: one `unshare`, 50 ms


def needs_lab_tools(*tools: str) -> pytest.MarkDecorator:
    """Tests that start labs through kalab (`kalab lab up`, kalab.lab.control, the throwaway trees of `kalab
    failover`) need `tools` and what a lab needs (kalab.lab.prerequisites.lab_problem: its tools and unprivileged
    user namespaces), for root or an ordinary user alike; without them they skip, saying what is lacking."""
    lacking = _not_installed(tools)
    problem = _lab_problem()
    if problem is not None:
        lacking.append(problem)
    reason = f"needs {', '.join(tools)} and a lab's namespace tree; lacks {' and '.join(lacking)}"
    return _skip_unless_ready(lacking, reason)
