"""A supervised program's output written as its container log: one line per line of output, each stamped in
RFC3339Nano UTC the way `kubectl logs --timestamps` shows it (logfiles.py reads these logs back).
"""

from __future__ import annotations

import re
import time
from typing import IO

MAX_LINE = 16384  # like the kubelet, split a line that never ends rather than buffer it forever


class Stamper:
    """RFC3339Nano UTC timestamps (`kubectl logs --timestamps`), formatting the seconds part once per second."""

    def __init__(self) -> None:
        self._second = -1
        self._prefix = b""

    def __call__(self) -> bytes:
        seconds, nanos = divmod(time.time_ns(), 1_000_000_000)
        if seconds != self._second:
            self._second = seconds
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)).encode()
        return b"%s.%09dZ " % (self._prefix, nanos)


class OutputLog:
    """One run's log file: output arrives in chunks, and only whole lines are stamped and written."""

    def __init__(self, file: IO[bytes], stamp: Stamper) -> None:
        self.file = file
        self._stamp = stamp
        self._partial = b""  # the start of a line whose end has not arrived yet

    def write(self, data: bytes) -> None:
        lines = (self._partial + data).split(b"\n")
        self._partial = lines.pop()
        if len(self._partial) >= MAX_LINE:
            lines.append(self._partial)
            self._partial = b""
        if lines:
            stamp = self._stamp()
            self.file.write(b"".join(stamp + line + b"\n" for line in lines))
            self.file.flush()

    def end(self) -> None:
        """The output has ended: a last line without its newline is written all the same."""
        if self._partial:
            self.file.write(self._stamp() + self._partial + b"\n")

    def close(self) -> None:
        self.file.close()


def safe_filename(name: str) -> str:
    """A process name as a file name (`<pod-ns>/<pod>/<container>` has slashes)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", name).strip(".") or "process"
