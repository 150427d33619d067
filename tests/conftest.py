"""The suite's fixtures and session hooks; the helpers they use live in tests/support."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.labs import SharedLab, shared_lab_named
from tests.support.paths import FIXTURES

_HOME = pytest.StashKey[str]()  # the KALAB_HOME of this test session


def pytest_configure(config: pytest.Config) -> None:
    """Every lab a test starts lives under a fresh KALAB_HOME, never among a real user's labs.

    Set in a hook pytest calls once, before it imports any test module. Subprocesses (`kalab …`, papermill kernels)
    inherit it.
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
    """One lab for every module that only needs a runbook stage (tests/support/labs.py SharedLab.at); started on
    first use, checked to leave nothing behind at the end of the session."""
    yield from shared_lab_named("t-shared")


@pytest.fixture
def fixtures() -> Path:
    return FIXTURES
