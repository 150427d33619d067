"""`pods/attach` for the kubelet: a session on a container's running program, as `kubectl attach` and
`kubectl debug -it` use it.

A real runtime hands the attached client the container's stdout and stderr from then on. The lab's containers
write into their log file, so an attached client gets the current run's output from the log, from its start: a
short command (`kubectl debug node/… -- chroot /host ip addr`) has usually printed everything before kubectl
attaches, and its output would otherwise be lost. The session ends when the program exits, with its exit code.
The lab's programs take no input, so what the client types is dropped.
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable, Iterator
from typing import Final

POLL: Final = 0.1


class LogSession:
    """An ExecSession over a container's log lines (already formatted) and, at their end, its exit code."""

    def __init__(self, lines: Iterator[bytes], exit_code: Callable[[], int | None]) -> None:
        self._exit_code = exit_code
        self._queue: queue.Queue[bytes] = queue.Queue()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._pump, args=(lines,), name="kalab-attach", daemon=True)
        self._thread.start()

    def _pump(self, lines: Iterator[bytes]) -> None:
        try:
            for line in lines:
                if self._stopped.is_set():
                    return
                self._queue.put(line)
        finally:
            self._queue.put(b"")

    def write_stdin(self, data: bytes) -> None:
        return None  # the lab's programs read no input

    def close_stdin(self) -> None:
        return None

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        try:
            data = self._queue.get(timeout=timeout)
        except queue.Empty:
            return None
        return (1, data) if data else (0, b"")

    def resize(self, width: int, height: int) -> None:
        return None

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            code = self._exit_code()
            if code is not None:
                return code
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError("the container is still running")
            time.sleep(POLL)

    def kill(self) -> None:
        self._stopped.set()  # detach: the container itself runs on, as after `kubectl attach` ends
