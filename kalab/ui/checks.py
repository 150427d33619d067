"""Step checks: the "verify" button at the end of each runbook step, showing ✅/❌ with the reason.

A check never hides a failure: in a browser it is a red line with the sentence saying what to do; in a headless
(papermill) run `raise_if_failed` turns it into an exception so the notebook, and `kalab run`, fail with it.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import ipywidgets as widgets

from kalab.model.errors import KalabError

PASS_MARK = "✅"
FAIL_MARK = "❌"


@dataclass(frozen=True)
class Check:
    """One verified step; `reason` is a full sentence (what was found, or what is wrong and how to fix it)."""

    name: str
    passed: bool
    reason: str = ""

    @property
    def mark(self) -> str:
        return PASS_MARK if self.passed else FAIL_MARK

    def line(self) -> str:
        """The check as one line of plain text, as a log or a headless run prints it."""
        return f"{self.mark} {self.name}" + (f": {self.reason}" if self.reason else "")


class CheckFailed(KalabError):
    """Raised by raise_if_failed; the message names every failed step with its reason."""

    def __init__(self, failed: list[Check]) -> None:
        self.failed = failed
        super().__init__(" ".join(f"{c.name} failed: {_sentence(c.reason)}" for c in failed))


def _sentence(reason: str) -> str:
    text = reason.strip() or "no reason was given"
    return text if text.endswith((".", "!", "?")) else text + "."


def verify(name: str, fn: Callable[[], object]) -> Check:
    """Run one step's check.

    `fn` passes by returning (a string it returns becomes the reason shown beside ✅) and fails by raising
    KalabError or AssertionError (their message becomes the reason) or by returning False. Any other exception
    is a bug in the check rather than a finding about the cluster, so it propagates with its traceback.
    """
    try:
        result = fn()
    except KalabError as err:
        return Check(name, False, str(err))
    except AssertionError as err:
        # Only the message's first line: assertion rewriting (pytest, some notebook helpers) appends the
        # failing expression, which is noise next to the sentence the check's author wrote.
        message = str(err).split("\n", 1)[0].strip()
        return Check(name, False, message or "An assertion in the check failed.")
    if result is False:
        return Check(name, False, "The check returned False.")
    return Check(name, True, result if isinstance(result, str) else "")


def checks_html(checks: Iterable[Check]) -> str:
    """The checks as an HTML list: one line each, failures in red so they stand out in an executed notebook."""
    items = []
    for c in checks:
        colour = "#1a7f37" if c.passed else "#cf222e"
        reason = f" — {html.escape(c.reason)}" if c.reason else ""
        items.append(
            f'<li style="list-style:none;margin:2px 0">{c.mark} '
            f'<b style="color:{colour}">{html.escape(c.name)}</b>{reason}</li>'
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
    """The checks ready to display: make it the last expression of a cell, or pass it to IPython's display()."""
    return CheckReport([checks] if isinstance(checks, Check) else checks)


def raise_if_failed(checks: Check | Iterable[Check] | CheckReport) -> None:
    """Stop a headless run at a failed step, with the step's reason as the error."""
    if isinstance(checks, CheckReport):
        items = checks.checks
    else:
        items = [checks] if isinstance(checks, Check) else list(checks)
    failed = [c for c in items if not c.passed]
    if failed:
        raise CheckFailed(failed)


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
