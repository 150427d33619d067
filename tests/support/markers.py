"""The marker of tests that need root and the real kernel's tools (namespaces, keepalived, iptables)."""

from __future__ import annotations

import os
import shutil

import pytest


def needs_root_tools(*tools: str) -> pytest.MarkDecorator:
    """Kernel-backed tests need root and the Debian tools `make test` installs; anything else is a set-up bug."""
    missing = [t for t in tools if shutil.which(t) is None]
    reason = f"needs root and {', '.join(tools)} (make test installs them)"
    # In CI the set-up installs everything, so a missing tool must fail loudly rather than skip quietly.
    return pytest.mark.skipif((os.geteuid() != 0 or bool(missing)) and not os.environ.get("CI"), reason=reason)
