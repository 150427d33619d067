"""A verified step's verdict: passed or not, the sentence saying what was found, and for a failure a hint.

Checks are plain data so that the functions judging each runbook step (kalab.cluster.checks) are pure and tested
without a cluster; kalab.ui.checks renders them (✅/❌ in the browser, one sentence in a headless run).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from kalab.model.errors import KalabError

PASS_MARK = "✅"
FAIL_MARK = "❌"


@dataclass(frozen=True)
class Hint:
    """Where to go from a failure: the likely cause, a command to look with, and the troubleshooting catalog's id."""

    cause: str = ""
    look: str = ""
    fault: str = ""  # an id of kalab.cluster.diagnose.catalog, when the failure is one of its faults
    fix: str = ""  # what to do, when it is known for sure (the diagnosis and the doctor know it)

    def parts(self) -> list[tuple[str, str, bool]]:
        """(label, text, is a command) for each part given, in reading order; both renderers lay these out."""
        given = [
            ("likely cause", _unstop(self.cause), False),
            ("fix", _unstop(self.fix), False),
            ("look with", self.look, True),
            ("troubleshooting catalog", self.fault, True),
        ]
        return [part for part in given if part[1]]

    def sentence(self) -> str:
        lines = []
        for label, text, _command in self.parts():
            shown = f"`{text}`" if label == "look with" else text  # an id reads fine without quotes in prose
            where = " (notebook 06, `kalab doctor`)" if label == "troubleshooting catalog" else ""
            joint = " " if label == "look with" else ": "
            lines.append(f"{label[0].upper()}{label[1:]}{joint}{shown}{where}.")
        return " ".join(lines)


@dataclass(frozen=True)
class Check:
    """One verified step; `reason` is a full sentence (what was found, or what is wrong)."""

    name: str
    passed: bool
    reason: str = ""
    hint: Hint | None = None

    @property
    def mark(self) -> str:
        return PASS_MARK if self.passed else FAIL_MARK

    def sentence(self) -> str:
        """The reason and, for a failure, the hint: what a headless run prints and the browser shows."""
        text = _stop(self.reason) if self.reason else ""
        if not self.passed and self.hint:
            text = f"{text} {self.hint.sentence()}".strip()
        return text

    def line(self) -> str:
        """The check as one line of plain text, as a log or a headless run prints it."""
        text = self.sentence()
        return f"{self.mark} {self.name}" + (f": {text}" if text else "")


def passed(name: str, reason: str) -> Check:
    return Check(name, True, reason)


def failed(name: str, reason: str, cause: str = "", look: str = "", fault: str = "", fix: str = "") -> Check:
    return Check(name, False, reason, Hint(cause, look, fault, fix) if cause or look or fault or fix else None)


class CheckFailed(KalabError):
    """A step's checks failed; the message names every failed check with its reason and hint."""

    def __init__(self, checks: Iterable[Check]) -> None:
        self.checks = list(checks)
        self.failed = [c for c in self.checks if not c.passed]
        super().__init__(" ".join(f"{c.name} failed: {c.sentence() or 'no reason was given.'}" for c in self.failed))


def raise_if_failed(checks: Check | Iterable[Check]) -> None:
    """Stop at a failed step, with each failed check's reason and hint as the error."""
    items = [checks] if isinstance(checks, Check) else list(checks)
    if any(not c.passed for c in items):
        raise CheckFailed(items)


def _stop(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "!", "?", "`")) else text + "."


def _unstop(text: str) -> str:
    return text.strip().rstrip(".")
