from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from labs import SharedLab, shared_lab_named

FIXTURES = Path(__file__).parent / "fixtures"
# The source document the runbook follows; its commands and outputs are golden fixtures.
SEED = FIXTURES / "seed.md"
_HOME = pytest.StashKey[str]()  # the KALAB_HOME of this test session


def pytest_configure(config: pytest.Config) -> None:
    """Every lab a test starts lives under a fresh KALAB_HOME, never among a real user's labs.

    Set here (a hook pytest calls once) rather than at import: test modules also import this file as `conftest`.
    Subprocesses (`kalab …`, papermill kernels) inherit it.
    """
    home = tempfile.mkdtemp(prefix="kalab-tests-")
    config.stash[_HOME] = home
    os.environ["KALAB_HOME"] = home
    os.environ.pop("KALAB_LAB", None)  # a test names its labs; none falls back to the user's choice


def pytest_unconfigure(config: pytest.Config) -> None:
    """Stop any lab a failed test left running, then remove the labs' home."""
    home = config.stash.get(_HOME, None)
    if home is None:
        return
    from kalab.lab import control

    try:
        for info in control.list_labs():
            if info.state != "down":
                control.down(info.name)
    finally:
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture(scope="session")
def shared_lab() -> Iterator[SharedLab]:
    """One lab for every module that only needs a runbook stage (tests/labs.py SharedLab.at); started on first use,
    checked to leave nothing behind at the end of the session."""
    yield from shared_lab_named("t-shared")


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES


def needs_root_tools(*tools: str) -> pytest.MarkDecorator:
    """Kernel-backed tests need root and the Debian tools `make test` installs; anything else is a set-up bug."""
    missing = [t for t in tools if shutil.which(t) is None]
    reason = f"needs root and {', '.join(tools)} (make test installs them)"
    # In CI the set-up installs everything, so a missing tool must fail loudly rather than skip quietly.
    return pytest.mark.skipif((os.geteuid() != 0 or bool(missing)) and not os.environ.get("CI"), reason=reason)
