"""Running the `kalab` command as a user would, and reading its one-sentence errors."""

from __future__ import annotations

import contextlib
import io
import subprocess
import sys

import pytest

from kalab.model.errors import KalabError


def run_kalab(*argv: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "kalab", *argv], capture_output=True, text=True, encoding="utf-8", timeout=timeout
    )


def one_stderr_line(result: subprocess.CompletedProcess[str]) -> str:
    """The single line a failing (or warning) command prints on stderr; never a traceback."""
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def one_sentence(err: pytest.ExceptionInfo[KalabError]) -> str:
    """A KalabError's message: one sentence, ending with a full stop, on one line."""
    text = str(err.value)
    assert text.endswith(".") and "\n" not in text, text
    return text


def run_kalab_here(*argv: str) -> subprocess.CompletedProcess[str]:
    """`kalab ARGV` in this process (kalab.cli.main.main, its output captured), shaped like run_kalab's result.

    The same parser, handlers and error reporting as the command, without a Python start-up and the command's
    imports per call; an exception main() lets through fails the test, as a traceback on stderr would."""
    from kalab.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            code = main(list(argv))
        except SystemExit as exit_:  # argparse's errors and --help
            code = exit_.code if isinstance(exit_.code, int) else 1
    return subprocess.CompletedProcess(["kalab", *argv], code, out.getvalue(), err.getvalue())
