"""`kalab run` executes the real notebooks with a real kernel; assert on what they recorded."""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
from kalabcli import run_kalab as kalab

ROOT = Path(__file__).resolve().parents[2]


def outputs_text(path: Path) -> str:
    nb = nbformat.read(str(path), as_version=4)
    chunks = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            chunks.append(out.get("text", "") or json.dumps(out.get("data", {})))
    return "\n".join(chunks)


def test_cidr_notebook_runs_headless_and_records_its_verdicts(tmp_path: Path) -> None:
    result = kalab("run", "--only", "02", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    executed = tmp_path / "02-externalip-cidr.ipynb"
    text = outputs_text(executed)
    assert "172.21.6.32/27: 32 addresses, services get 172.21.6.33 … 172.21.6.62" in text
    assert "has host bits set" in text
    html = (tmp_path / "02-externalip-cidr.html").read_text()
    assert "Plan the externalIP CIDRs" in html
    runs = json.loads((tmp_path / "run.json").read_text())
    assert [r["ok"] for r in runs] == [True]


def test_a_failing_step_fails_the_run_with_one_sentence(tmp_path: Path) -> None:
    result = kalab("run", "--only", "02", "--out", str(tmp_path), "-p", "auto_assign_cidr=172.30.0.0/24")
    assert result.returncode == 1
    assert result.stderr.count("\n") == 1, result.stderr
    last = result.stderr.strip()
    assert last.startswith("kalab: error: 02-externalip-cidr.ipynb failed")
    assert "Traceback" not in result.stderr
    assert "service network" in outputs_text(tmp_path / "02-externalip-cidr.ipynb")


def test_bad_parameter_and_missing_folder_are_one_sentence(tmp_path: Path) -> None:
    bad = kalab("run", "-p", "no-equals-sign")
    assert bad.returncode == 1
    assert bad.stderr.count("\n") == 1 and "KEY=VALUE" in bad.stderr
    missing = kalab("run", "--notebooks", str(tmp_path / "nope"))
    assert missing.returncode == 1
    assert "is not a folder of notebooks" in missing.stderr
