"""`pods/attach` for the kubelet: a session on a container's running program, as `kubectl attach` and
`kubectl debug -it` use it.

A real runtime hands the attached client the container's stdout and stderr from then on. The lab's containers
write into their log file, so an attached client gets the current run's output from the log, from its start: a
short command (`kubectl debug node/… -- chroot /host ip addr`) has usually printed everything before kubectl
attaches, and its output would otherwise be lost. The session ends when the program exits, with its exit code.
What the client types goes to the container's stdin FIFO when it has one (an interactive node-debug container,
see images/node_debug.py); the lab's other programs take no input, so it is dropped for them. Detaching closes
only the session's end of the FIFO: the container keeps its input open, as with stdinOnce=false.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import queue
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Final

POLL: Final = 0.1
OPEN_WAIT: Final = 5.0  # how long a first keystroke waits for the container to open its input


class LogSession:
    """An ExecSession over a container's log lines (already formatted) and, at their end, its exit code."""

    def __init__(self, lines: Iterator[bytes], exit_code: Callable[[], int | None], stdin: Path | None = None) -> None:
        self._exit_code = exit_code
        self._stdin_path = stdin
        self._stdin: int | None = None
        self._stdin_lock = threading.Lock()
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
        with self._stdin_lock:
            fd = self._open_stdin()
            if fd is None:
                return  # no input to give it to
            with contextlib.suppress(OSError):
                os.write(fd, data)

    def _open_stdin(self) -> int | None:
        if self._stdin is not None or self._stdin_path is None:
            return self._stdin
        deadline = time.monotonic() + OPEN_WAIT
        while True:
            try:
                # Non-blocking, so a container that never opens its input cannot hang the session here.
                fd = os.open(self._stdin_path, os.O_WRONLY | os.O_NONBLOCK | os.O_CLOEXEC)
            except OSError as err:
                if err.errno != errno.ENXIO or time.monotonic() >= deadline or self._exit_code() is not None:
                    self._stdin_path = None
                    return None
                time.sleep(POLL)
                continue
            fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
            self._stdin = fd
            return fd

    def close_stdin(self) -> None:
        with self._stdin_lock:
            if self._stdin is not None:
                os.close(self._stdin)
            self._stdin, self._stdin_path = None, None

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
        self.close_stdin()
