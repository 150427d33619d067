"""In a real kernel, a failed check or any kalab error shows as ❌ sentences, never as a traceback, and still stops."""

from __future__ import annotations

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

SETUP = """
from kalab.model.check import failed, passed
from kalab.model.errors import KalabError
from kalab.ui.checks import install_error_display, show
install_error_display()
"""


def run(*cells: str) -> tuple[list[list[dict[str, object]]], CellExecutionError | None]:
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(SETUP), *map(nbformat.v4.new_code_cell, cells)])
    error = None
    try:
        NotebookClient(nb, timeout=60, kernel_name="python3").execute()
    except CellExecutionError as err:
        error = err
    return [list(c.outputs) for c in nb.cells[1:]], error


def test_a_failed_check_renders_its_lines_and_stops_the_run_without_a_traceback() -> None:
    outputs, error = run(
        'show(passed("a", "fine"), failed("b", "master-2 lacks the label", "not labelled", "oc get nodes", '
        '"scc-missing"))',
        'print("never reached")',
    )
    assert error is not None and error.ename == "CheckFailed"  # papermill and `kalab run` stop with the sentence
    assert "b failed: master-2 lacks the label. Likely cause: not labelled. Look with `oc get nodes`." in error.evalue
    shown, err = outputs[0]
    html = shown["data"]["text/html"]  # type: ignore[index]
    assert "✅" in html and "❌" in html and "master-2 lacks the label" in html and "scc-missing" in html
    assert err["output_type"] == "error"
    assert err["traceback"] == [
        "Run All stopped at this step: do what the red line above says, then run this cell again."
    ]
    assert outputs[1] == []  # the next cell never ran


def test_a_passing_step_shows_its_lines_as_the_cell_result() -> None:
    outputs, error = run('show(passed("nodes Ready", "3 nodes Ready"))')
    assert error is None
    (result,) = outputs[0]
    assert "✅" in result["data"]["text/html"] and "3 nodes Ready" in result["data"]["text/plain"]  # type: ignore[index]


def test_any_kalab_error_is_one_sentence_and_other_errors_keep_their_traceback() -> None:
    outputs, error = run('raise KalabError("Pick at least one node; with none, no keepalived runs.")')
    assert error is not None and error.ename == "KalabError"
    shown, err = outputs[0]
    assert "Pick at least one node" in shown["data"]["text/html"]  # type: ignore[index]
    assert len(err["traceback"]) == 1 and "Traceback" not in err["traceback"][0]  # type: ignore[index]
    outputs, error = run("1 / 0")
    assert error is not None and error.ename == "ZeroDivisionError"
    assert len(outputs[0][0]["traceback"]) > 1  # type: ignore[arg-type]  # a bug still shows where it is


def test_an_interrupt_is_one_line_saying_the_step_can_be_run_again() -> None:
    outputs, error = run("raise KeyboardInterrupt")
    assert error is not None and error.ename == "KeyboardInterrupt"
    shown, err = outputs[0]
    html = shown["data"]["text/html"]  # type: ignore[index]
    assert "interrupted" in html and "run this cell again" in html
    assert len(err["traceback"]) == 1 and "Traceback" not in err["traceback"][0]  # type: ignore[index]
