"""A whole lab (`kalab lab up`) for a test module, taken down afterwards with nothing left behind."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from kalab.lab import control
from kalab.lab.dataplane.topology import lab_namespaces


@contextmanager
def running_lab(state_dir: Path, prefix: str) -> Iterator[control.LabInfo]:
    """A started lab; afterwards its state directory and every namespace with `prefix` must be gone."""
    try:
        yield control.up(state_dir, prefix)
    finally:
        control.down(state_dir, prefix)
        assert not state_dir.exists()
        assert lab_namespaces(prefix) == []
