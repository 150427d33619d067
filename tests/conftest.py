from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

FIXTURES = Path(__file__).parent / "fixtures"
# The source document the runbook follows; its commands and outputs are golden fixtures.
SEED = FIXTURES / "seed.md"


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def needs_root_tools(*tools: str) -> pytest.MarkDecorator:
    """Kernel-backed tests need root and the Debian tools `make test` installs; anything else is a set-up bug."""
    missing = [t for t in tools if shutil.which(t) is None]
    reason = f"needs root and {', '.join(tools)} (make test installs them)"
    # In CI the set-up installs everything, so a missing tool must fail loudly rather than skip quietly.
    return pytest.mark.skipif((os.geteuid() != 0 or bool(missing)) and not os.environ.get("CI"), reason=reason)
