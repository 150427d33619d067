"""`kalab run` executes the real notebooks with a real kernel; assert on what they recorded.

The whole runbook against a lab, run twice, is tests/notebooks/test_runbook.py.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat

from tests.support.kalabcli import run_kalab as kalab

ROOT = Path(__file__).resolve().parents[2]


def outputs_text(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    chunks = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            chunks.append(out.get("text", "") or json.dumps(out.get("data", {})))
    return "\n".join(chunks)


def test_a_failing_step_fails_the_run_with_one_sentence(tmp_path: Path) -> None:
    result = kalab("run", "--only", "02", "--out", str(tmp_path), "-p", "auto_assign_cidr=172.30.0.0/24")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    last = result.stderr.strip()
    assert last.startswith("kalab: error: 02-externalip-cidr.ipynb failed")
    assert "Traceback" not in result.stderr
    text = outputs_text(tmp_path / "02-externalip-cidr.ipynb")
    assert "service network" in text
    # It stops at the CIDR check, before it connects to any cluster.
    assert "✅ the merge patch" not in text and "spec.externalIP is not set" not in text


def test_bad_parameter_and_missing_folder_are_one_sentence(tmp_path: Path) -> None:
    bad = kalab("run", "-p", "no-equals-sign")
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "KEY=VALUE" in bad.stderr
    missing = kalab("run", "--notebooks", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert "is not a folder of notebooks" in missing.stderr


def test_a_kernel_that_dies_is_named_with_its_last_words(tmp_path: Path) -> None:
    """The kernel's own stderr stays out of kalab's output unless the kernel dies; then its last words are the cause."""
    folder = tmp_path / "notebooks"
    folder.mkdir()
    nb = nbformat.v4.new_notebook()
    nb.cells = [
        nbformat.v4.new_code_cell("import sys\nprint('kernel noise', file=sys.__stderr__, flush=True)"),
        nbformat.v4.new_code_cell(
            "import os, sys\nprint('out of memory', file=sys.__stderr__, flush=True)\nos._exit(3)"
        ),
    ]
    nbformat.write(nb, str(folder / "00-dies.ipynb"))
    result = kalab("run", "--notebooks", str(folder), "--out", str(tmp_path / "out"))
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    assert "00-dies.ipynb failed (the kernel died (" in result.stderr and "out of memory" in result.stderr
    assert "Traceback" not in result.stderr
