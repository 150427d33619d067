"""Step checks in the notebook: ✅/❌ lines with the reason, and for a failure its hint, never a traceback.

The verdicts come from kalab.cluster.checks (pure functions over what a step returned). `show` renders them as the
cell's result; when one failed it raises CheckFailed, which stops Run All and a headless (papermill) run alike.
`install_error_display` makes IPython render every KalabError as its ❌ sentence instead of a traceback: in the
browser the attendee sees what is wrong and what to do, and a headless run reports the same sentence.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from typing import Any

import ipywidgets as widgets

from kalab.model import check as _check
from kalab.model.check import FAIL_MARK, PASS_MARK, Check, CheckFailed, Hint
from kalab.model.errors import KalabError

__all__ = [
    "FAIL_MARK",
    "PASS_MARK",
    "Check",
    "CheckFailed",
    "CheckReport",
    "VerifyButton",
    "checks_html",
    "install_error_display",
    "raise_if_failed",
    "show",
    "show_checks",
    "verify",
]

_GREEN, _RED = "#1a7f37", "#cf222e"


def verify(name: str, fn: Callable[[], object]) -> Check:
    """Run a check written as a callable (for checks of your own, e.g. on a Verify button).

    `fn` passes by returning (a string it returns becomes the reason shown beside ✅) and fails by raising
    KalabError or AssertionError (their message becomes the reason) or by returning False. Any other exception
    is a bug in the check rather than a finding about the cluster, so it propagates.
    """
    try:
        result = fn()
    except KalabError as err:
        return Check(name, False, str(err))
    except AssertionError as err:
        # Only the message's first line: assertion rewriting appends the failing expression, which is noise.
        message = str(err).split("\n", 1)[0].strip()
        return Check(name, False, message or "An assertion in the check failed.")
    if result is False:
        return Check(name, False, "The check returned False.")
    if isinstance(result, Check):
        return result
    return Check(name, True, result if isinstance(result, str) else "")


def _hint_html(hint: Hint) -> str:
    parts = []
    for label, text, command in hint.parts():
        shown = f"<code>{html.escape(text)}</code>" if command else html.escape(text)
        where = " (notebook 06, <code>kalab doctor</code>)" if label == "troubleshooting catalog" else ""
        parts.append(f"{label}{' ' if label == 'look with' else ': '}{shown}{where}")
    return f'<div class="kalab-hint" style="margin-left:1.6em;color:#57606a">{" · ".join(parts)}</div>'


def checks_html(checks: Iterable[Check]) -> str:
    """The checks as an HTML list: one line each, failures in red with their hint beneath."""
    items = []
    for c in checks:
        colour = _GREEN if c.passed else _RED
        reason = f" — {html.escape(c.reason)}" if c.reason else ""
        hint = _hint_html(c.hint) if c.hint and not c.passed else ""
        state = "passed" if c.passed else "failed"
        items.append(
            f'<li class="kalab-check kalab-check-{state}" style="list-style:none;margin:2px 0">{c.mark} '
            f'<b style="color:{colour}">{html.escape(c.name)}</b>{reason}{hint}</li>'
        )
    return '<ul class="kalab-checks" style="padding-left:0;margin:4px 0">' + "".join(items) + "</ul>"


class CheckReport:
    """A list of checks that renders as HTML in a notebook (live or exported) and as text anywhere else."""

    def __init__(self, checks: Iterable[Check]) -> None:
        self.checks = list(checks)

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def _repr_html_(self) -> str:
        # Plain HTML rather than a widget: it survives nbconvert's HTML export of a papermill run.
        return checks_html(self.checks)

    def __str__(self) -> str:
        return "\n".join(c.line() for c in self.checks)

    def __repr__(self) -> str:
        return str(self)


def show_checks(checks: Check | Iterable[Check]) -> CheckReport:
    """The checks ready to display, failed or not: make it the last expression of a cell."""
    return CheckReport([checks] if isinstance(checks, Check) else checks)


def raise_if_failed(checks: Check | Iterable[Check] | CheckReport) -> None:
    """Stop a run at a failed step, with each failed check's reason and hint as the error."""
    _check.raise_if_failed(checks.checks if isinstance(checks, CheckReport) else checks)


def show(*checks: Check | Iterable[Check]) -> CheckReport:
    """A step's verdicts as the cell's result; a failed one stops the run here (CheckFailed, shown as ❌ lines)."""
    flat: list[Check] = []
    for item in checks:
        flat += [item] if isinstance(item, Check) else list(item)
    install_error_display()
    raise_if_failed(flat)
    return CheckReport(flat)


# --- IPython: errors as sentences ------------------------------------------------------------------------------

_STOPPED = "Run All stopped at this step: do what the red line above says, then run this cell again."
_INTERRUPTED = "You interrupted this step; every step is safe to repeat, so run this cell again to redo it."


def _error_display(shell: Any, etype: type, value: BaseException, tb: Any, tb_offset: Any = None) -> list[str]:
    """IPython's custom handler for KalabError: the ❌ lines as HTML, then an error whose 'traceback' is one line.

    The error output carries the exception's name and sentence, so Run All and papermill stop here and a headless
    run reports the same sentence; what the reader sees is the ❌ lines and the line saying the run stopped.
    """
    from IPython.display import HTML, display

    if isinstance(value, KeyboardInterrupt):
        checks, stb = [Check("interrupted", False, _INTERRUPTED)], [_INTERRUPTED]
    elif isinstance(value, CheckFailed):
        checks, stb = value.checks, [_STOPPED]
    else:
        checks, stb = [Check("stopped", False, str(value) or etype.__name__)], [_STOPPED]
    display(HTML(checks_html(checks)))  # type: ignore[no-untyped-call]
    shell._showtraceback(etype, value, stb)  # publishes the error output; IPython leaves that to custom handlers
    return stb


def install_error_display() -> bool:
    """Render KalabError (so every failed check) and an interrupt as ❌ sentences in this kernel; False outside one."""
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover - IPython comes with ipywidgets
        return False
    shell = get_ipython()
    if shell is None or not hasattr(shell, "set_custom_exc"):
        return False
    if KalabError not in getattr(shell, "custom_exceptions", ()):
        shell.set_custom_exc((KalabError, KeyboardInterrupt), _error_display)
    return True


class VerifyButton:
    """A "Verify" button that re-runs a step's checks and shows the result beneath it.

    The checks run once when it is built, so an executed notebook records the result without any click;
    `checks` always holds the latest outcome for raise_if_failed.
    """

    def __init__(self, checks: dict[str, Callable[[], object]], label: str = "Verify", run: bool = True) -> None:
        self._fns = dict(checks)
        self.checks: list[Check] = []
        self.button = widgets.Button(description=label, icon="check", button_style="info")
        self.output = widgets.HTML()
        self.button.on_click(lambda _button: self.run())
        self.widget = widgets.VBox([self.button, self.output])
        if run:
            self.run()

    def run(self) -> list[Check]:
        self.checks = [verify(name, fn) for name, fn in self._fns.items()]
        self.output.value = checks_html(self.checks)
        return self.checks

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        return self.widget._repr_mimebundle_(**kwargs)
