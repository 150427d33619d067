"""What every process the lab forks sets up between fork and exec, so that none outlives the lab.

The kernel SIGKILLs the child when the *thread* that forked it dies (PR_SET_PDEATHSIG); the child also checks that
this thread did not die before the hook ran, and gives up then. The supervisor forks on its one long-lived loop
thread; an exec session forks on the API server's handler thread, so the command ends with its session.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import signal
import termios
from collections.abc import Callable
from typing import Final

_PR_SET_PDEATHSIG: Final = 1
_libc = ctypes.CDLL(None, use_errno=True)


def die_with_parent(parent: int, controlling_tty: bool = False) -> Callable[[], None]:
    """A preexec hook: SIGKILL this child when the forking thread dies, and give up if it already has. With
    `controlling_tty` (after setsid, stdin being a pty) the pty also becomes the session's controlling terminal."""
    prctl, sigkill = _libc.prctl, int(signal.SIGKILL)

    def hook() -> None:
        if prctl(_PR_SET_PDEATHSIG, sigkill, 0, 0, 0) != 0 or os.getppid() != parent:
            os._exit(126)
        if controlling_tty:
            fcntl.ioctl(0, termios.TIOCSCTTY, 0)

    return hook
