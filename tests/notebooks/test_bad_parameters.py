"""A notebook given a bad parameter stops at the step that uses it, with one sentence and no traceback, both in the
executed notebook (what the browser shows) and from `kalab run` (what a headless run prints).

Every case here fails before the notebook needs a cluster, so no lab is started.
"""

from __future__ import annotations

from pathlib import Path

import nbformat
import pytest

from tests.support.kalabcli import one_stderr_line, run_kalab

CASES = [
    ("02", ["-p", "auto_assign_cidr=nonsense"], 'CheckFailed: auto-assign block failed: Fix the CIDR: "nonsense"'),
    ("02", ["-p", "auto_assign_cidr=10.254.0.0/24"], "overlaps the cluster network 10.254.0.0/16"),
    ("00", ["-p", "kubeconfig=/nonexistent/kubeconfig"], "KalabError: No kubeconfig at /nonexistent/kubeconfig"),
    ("01", ["-p", "kubeconfig=/etc/hostname"], "is not a kubeconfig"),
]


@pytest.mark.parametrize(("only", "params", "said"), CASES, ids=lambda v: v if isinstance(v, str) else None)
def test_a_bad_parameter_is_one_sentence_in_the_notebook_and_from_kalab_run(
    only: str, params: list[str], said: str, tmp_path: Path
) -> None:
    result = run_kalab("run", "--only", only, "--out", str(tmp_path), *params, timeout=180)
    assert result.returncode == 1
    line = one_stderr_line(result)
    assert line.startswith(f"kalab: error: {only}-") and said in line, line
    assert "Traceback" not in result.stdout
    (executed,) = tmp_path.glob(f"{only}-*.ipynb")
    errors = [
        o for c in nbformat.read(executed, as_version=4).cells for o in c.get("outputs", []) if o.output_type == "error"
    ]
    assert len(errors) == 1 and len(errors[0].traceback) == 1  # the browser shows the ❌ line, not a traceback
    shown = [
        o
        for c in nbformat.read(executed, as_version=4).cells
        for o in c.get("outputs", [])
        if "text/html" in o.get("data", {}) and "kalab-check-failed" in o["data"]["text/html"]
    ]
    assert len(shown) == 1
