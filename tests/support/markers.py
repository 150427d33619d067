"""The marker of tests that need root and the real kernel's tools (namespaces, keepalived, iptables)."""

from __future__ import annotations

import os
import shutil

import pytest

from kalab.lab.dataplane.tree import with_sbin


def needs_root_tools(*tools: str) -> pytest.MarkDecorator:
    """Kernel-backed tests need root and the Debian tools `make test` installs: without either they skip, saying
    which is lacking, so an ordinary user's run is the root-free part of the suite."""
    lacking = [] if os.geteuid() == 0 else [f"root (this is uid {os.geteuid()})"]
    search = with_sbin(os.environ.get("PATH", ""))  # as the lab looks: an ordinary user's PATH lacks sbin
    missing = [t for t in tools if shutil.which(t, path=search) is None]
    if missing:
        lacking.append(f"{', '.join(missing)} (not installed)")
    reason = f"needs root and {', '.join(tools)}; lacks {' and '.join(lacking)}: `make test` as root runs it"
    # In CI the set-up installs everything, so a missing tool must fail loudly rather than skip quietly.
    return pytest.mark.skipif(bool(lacking) and not os.environ.get("CI"), reason=reason)
