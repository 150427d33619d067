"""Small helpers every verb shares: progress reporting, deadlines and turning API errors into one sentence."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException

from kalab.model.errors import KalabError

Progress = Callable[[str], None] | None


def report(progress: Progress, message: str) -> None:
    if progress is not None:
        progress(message)


def api_message(err: ApiException) -> str:
    """The API server's own message for a failed call (its Status body), or the HTTP reason."""
    try:
        body = json.loads(err.body or "")
    except (TypeError, ValueError):
        body = None
    if isinstance(body, dict) and body.get("message"):
        return str(body["message"])
    return f"{err.status} {err.reason}"


def sentence(text: str) -> str:
    text = text.strip()
    return text if text.endswith((".", "?", "!")) else text + "."


def fail(what: str, err: ApiException, next_step: str) -> KalabError:
    """`what` failed because of `err` (the server's words); then what to do."""
    return KalabError(sentence(f"{what} failed ({api_message(err).rstrip('.')}); {next_step}"))


class Deadline:
    """Time left before a timeout, for watch chunks and polling loops."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self.end = time.monotonic() + timeout

    def left(self) -> float:
        return max(0.0, self.end - time.monotonic())

    def expired(self) -> bool:
        return self.left() <= 0


def poll(check: Callable[[], Any], timeout: float, on_timeout: Callable[[], KalabError], interval: float = 0.2) -> Any:
    """Call `check` until it returns something other than None/False; raise `on_timeout()` after `timeout` s."""
    deadline = Deadline(timeout)
    while True:
        result = check()
        if result is not None and result is not False:
            return result
        if deadline.expired():
            raise on_timeout()
        time.sleep(min(interval, max(deadline.left(), 0.01)))


def as_dict(obj: object) -> dict[str, Any]:
    """A custom-object API answer (typed `object` by the client) as the JSON dict it is."""
    if not isinstance(obj, dict):
        raise KalabError(f"The API server answered with {type(obj).__name__}, not a JSON object; check the server URL.")
    return obj
