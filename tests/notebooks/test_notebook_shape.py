"""The runbook's notebooks are prose and one call per step: checked on the files themselves, without running them."""

from __future__ import annotations

import ast
from pathlib import Path

import nbformat
import pytest

NOTEBOOKS = sorted((Path(__file__).parents[2] / "notebooks").glob("*.ipynb"))


def code_cells(path: Path) -> list[str]:
    nb = nbformat.read(path, as_version=4)
    return [c.source for c in nb.cells if c.cell_type == "code"]


def test_there_are_seven_notebooks() -> None:
    assert [p.name[:2] for p in NOTEBOOKS] == ["00", "01", "02", "03", "04", "05", "06"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_hold_calls_into_kalab_not_logic(path: Path) -> None:
    for source in code_cells(path):
        tree = ast.parse(source)
        imported = [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
        imported += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
        assert not [m for m in imported if m and m.startswith("kalab.lab")], f"{path.name} imports the lab:\n{source}"
        assert not [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.Assert)], (
            f"{path.name} has a check written in a cell (it belongs in kalab.cluster.checks):\n{source}"
        )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_verify_step_shows_its_checks_and_the_notebook_attaches_first(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    cells = nb.cells
    verifies = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and c.source.startswith("**Verify:**")]
    assert verifies
    for i in verifies:
        step = next(c.source for c in cells[i + 1 :] if c.cell_type == "code")
        assert "show(" in step, f"{path.name}: the step after {cells[i].source[:60]!r} shows no checks"
    steps = [c.source for c in cells if c.cell_type == "code" and "parameters" not in c.metadata.get("tags", [])]
    first_cluster_call = next(s for s in steps if "cluster" in s)
    if path.stem != "02-externalip-cidr":  # 02 plans the CIDRs on paper before it touches the cluster
        assert "attach(" in first_cluster_call, f"{path.name} talks to a cluster before attaching"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_committed_without_outputs(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in nb.cells if c.cell_type == "code")
