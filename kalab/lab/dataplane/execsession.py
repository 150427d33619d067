"""A command run for `pods/exec`, with pipes or a pty: the ExecSession the API server streams.

The command runs in its own session, dies with the thread that started it (children.die_with_parent), and when it
ends whatever it left in its process group is killed with it, as the supervisor does for containers.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import pty
import queue
import select
import signal
import struct
import subprocess
import termios
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import IO

from kalab.lab.dataplane.children import die_with_parent


class ExecProcess:
    """One `ip netns exec` command with pipes (or a pty): the ExecSession the API server streams.

    The command lives no longer than the thread that started it (the API server's handler for this session).
    """

    def __init__(self, argv: list[str], env: Mapping[str, str], *, stdin: bool, tty: bool, cwd: Path) -> None:
        self._lock = threading.Lock()
        self._queue: queue.Queue[tuple[int, bytes]] = queue.Queue()
        self._master: int | None = None
        self._stdin: IO[bytes] | None = None
        self._tty = tty
        readers: list[tuple[int, int]] = []
        if tty:
            master, slave = pty.openpty()
            try:
                self._popen = subprocess.Popen(
                    argv,
                    stdin=slave,
                    stdout=slave,
                    stderr=slave,
                    env=dict(env),
                    cwd=cwd,
                    start_new_session=True,
                    preexec_fn=die_with_parent(os.getpid(), controlling_tty=True),
                )
            except BaseException:
                os.close(master)
                raise
            finally:
                os.close(slave)
            self._master = master
            readers.append((1, master))
        else:
            self._popen = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=dict(env),
                cwd=cwd,
                start_new_session=True,
                preexec_fn=die_with_parent(os.getpid()),
            )
            assert self._popen.stdout is not None and self._popen.stderr is not None
            self._stdin = self._popen.stdin
            readers += [(1, self._popen.stdout.fileno()), (2, self._popen.stderr.fileno())]
        self._pidfd = os.pidfd_open(self._popen.pid)
        self._open_streams = len(readers)
        self._threads = [
            threading.Thread(target=self._pump, args=(stream, fd), name="kalab-exec-io", daemon=True)
            for stream, fd in readers
        ]
        for thread in self._threads:
            thread.start()

    def _pump(self, stream: int, fd: int) -> None:
        try:
            while True:
                try:
                    data = os.read(fd, 65536)
                except OSError:  # EIO: the pty's other side is gone
                    data = b""
                if not data:
                    return
                self._queue.put((stream, data))
        finally:
            self._queue.put((stream, b""))

    def write_stdin(self, data: bytes) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            if self._master is not None:
                os.write(self._master, data)
            elif self._stdin is not None:
                self._stdin.write(data)
                self._stdin.flush()

    def close_stdin(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError, ValueError):
            if self._master is not None:
                os.write(self._master, b"\x04")  # end of input on a terminal
            elif self._stdin is not None:
                self._stdin.close()

    def read(self, timeout: float) -> tuple[int, bytes] | None:
        deadline = time.monotonic() + timeout
        while self._open_streams:
            try:
                stream, data = self._queue.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                return None
            if data:
                return stream, data
            self._open_streams -= 1
        return 0, b""

    def resize(self, width: int, height: int) -> None:
        if self._master is not None:
            with contextlib.suppress(OSError):
                fcntl.ioctl(self._master, termios.TIOCSWINSZ, struct.pack("HHHH", height, width, 0, 0))

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            with self._lock:
                code = self._reap()
            if code is not None:
                return code
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise TimeoutError("the command is still running")
            select.select([self._pidfd], [], [], 0.5 if left is None else min(left, 0.5))

    def _reap(self) -> int | None:
        """The exit code once the command ended; whatever it left in its process group is killed first."""
        if self._popen.returncode is None:
            if os.waitid(os.P_PID, self._popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None:
                return None
            # Still a zombie, so its PID names its group and nobody else's: take its leftovers with it.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self._popen.pid, signal.SIGKILL)
            self._popen.wait()
            os.close(self._pidfd)
            for thread in self._threads:
                thread.join(timeout=5)
            if self._master is not None:
                os.close(self._master)
                self._master = None
            for pipe in (self._popen.stdin, self._popen.stdout, self._popen.stderr):
                if pipe is not None:
                    with contextlib.suppress(OSError):
                        pipe.close()
        code = self._popen.returncode
        return 128 - code if code < 0 else code

    def finished(self) -> bool:
        with self._lock:
            return self._reap() is not None

    def kill(self) -> None:
        with self._lock:
            if self._popen.returncode is None:
                # Not reaped yet, so the group ID is still ours, whether the command runs or is a zombie.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self._popen.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            self.wait(10)
