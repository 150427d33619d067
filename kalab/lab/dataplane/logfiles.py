"""Reading a container's log file as `kubectl logs` shows it, and following a file as it is written.

The supervisor writes each container's output to a file, every line starting with an RFC3339Nano stamp and a space
(supervisor.py); a restart moves the last run's file aside (`.previous`) and starts a new one, so a follower stops
when the file it reads is replaced or its writer stops running.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

LOG_POLL: Final = 0.1  # seconds between looks at a followed log file
OPEN_WAIT: Final = 5.0  # how long a follower waits for the file to appear
RAW_POLL: Final = 0.02  # a terminal's echo should feel immediate


def _parse_stamp(token: bytes) -> datetime | None:
    text = token.decode(errors="replace")
    try:
        whole, _, frac = text.rstrip("Z").partition(".")
        return datetime.strptime(whole, "%Y-%m-%dT%H:%M:%S").replace(tzinfo=UTC, microsecond=int((frac + "000000")[:6]))
    except ValueError:
        return None


def _format(line: bytes, timestamps: bool) -> bytes:
    # The supervisor starts every line with an RFC3339Nano stamp and a space; `--timestamps` keeps it.
    return line + b"\n" if timestamps else line.partition(b" ")[2] + b"\n"


def read_log(
    path: Path,
    timestamps: bool,
    tail: int | None,
    since: datetime | None,
    running: Callable[[], bool] | None,
) -> Iterator[bytes]:
    def wanted(line: bytes) -> bool:
        if since is None:
            return True
        stamp = _parse_stamp(line.partition(b" ")[0])
        return stamp is None or stamp >= since

    try:
        handle: IO[bytes] = path.open("rb")
    except FileNotFoundError:
        return
    with handle:
        lines = handle.read().split(b"\n")
        partial = lines.pop()
        lines = [line for line in lines if wanted(line)]
        if tail is not None:
            lines = lines[-tail:] if tail > 0 else []
        for line in lines:
            yield _format(line, timestamps)
        if running is None:
            return
        inode = os.fstat(handle.fileno()).st_ino
        while True:
            chunk = handle.read()
            if chunk:
                pieces = (partial + chunk).split(b"\n")
                partial = pieces.pop()
                for line in pieces:
                    if wanted(line):
                        yield _format(line, timestamps)
                continue
            try:
                replaced = path.stat().st_ino != inode  # the container restarted: this run's log is complete
            except FileNotFoundError:
                replaced = True
            if replaced or not running():
                rest = handle.read()  # whatever was written between the last read and the stop
                for line in (partial + rest).split(b"\n"):
                    if line and wanted(line):
                        yield _format(line, timestamps)
                return
            time.sleep(LOG_POLL)


def follow_raw(path: Path, running: Callable[[], bool]) -> Iterator[bytes]:
    """The bytes of `path` as they are written, until the writer stops running (a tty's output, prompts and all)."""
    deadline = time.monotonic() + OPEN_WAIT
    while not path.exists():
        if not running() or time.monotonic() >= deadline:
            return
        time.sleep(LOG_POLL)
    with path.open("rb") as handle:
        while True:
            chunk = handle.read(65536)
            if chunk:
                yield chunk
                continue
            if not running():
                rest = handle.read()
                if rest:
                    yield rest
                return
            time.sleep(RAW_POLL)
