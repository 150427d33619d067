"""What the supervisor is given and what it reports: a program to run (`ProcessSpec`), how one run ended
(`Termination`) and a snapshot of a supervised program (`ProcessStatus`), shaped like a container's spec and status.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Literal

from kalab.lab.dataplane.entry import HERE
from kalab.lab.dataplane.restart_policy import POLICIES, Backoff, RestartPolicy
from kalab.model.errors import KalabError

ProcessState = Literal["running", "waiting", "exited"]

_NETNS_NAME = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")


@dataclass(frozen=True)
class ProcessSpec:
    """One program to supervise; `name` is its key (e.g. `<pod-ns>/<pod>/<container>`)."""

    name: str
    argv: Sequence[str]
    netns: str | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cwd: Path | None = None
    log_path: Path | None = None  # default: <state_dir>/logs/<name>.log
    restart_policy: RestartPolicy = "Never"
    backoff: Backoff = field(default_factory=Backoff)
    inherit_env: bool = False  # start from this process's environment instead of a minimal one

    def __post_init__(self) -> None:
        if not self.name or "\0" in self.name:
            raise KalabError("A supervised process needs a non-empty name without NUL characters.")
        if isinstance(self.argv, str) or not self.argv or any("\0" in a for a in self.argv):
            raise KalabError(f"Process {self.name} needs a command line of non-empty arguments without NULs.")
        if self.restart_policy not in POLICIES:
            raise KalabError(
                f"Process {self.name} has restart policy {self.restart_policy!r}; use Always, OnFailure or Never."
            )
        if self.netns is not None and not _NETNS_NAME.match(self.netns):
            raise KalabError(f"Process {self.name} names network namespace {self.netns!r}, which is not a valid name.")
        object.__setattr__(self, "argv", tuple(self.argv))

    def command(self) -> list[str]:
        """The command line actually executed (`ip netns exec` replaces itself with the program)."""
        return HERE.command(self.netns, self.argv) if self.netns else list(self.argv)


@dataclass(frozen=True)
class Termination:
    """How one run ended; `exit_code` follows the container convention: 128 + signal when killed by a signal."""

    exit_code: int
    signal: int | None
    reason: str  # Completed (exit 0), Error, or StartError (could not be started at all)
    started_at: datetime
    finished_at: datetime


@dataclass(frozen=True)
class ProcessStatus:
    """A snapshot; `state` is running, waiting (a restart is scheduled) or exited (no restart will follow)."""

    name: str
    state: ProcessState
    pid: int | None
    restarts: int
    started_at: datetime | None  # of the current run, or of the last one when not running
    finished_at: datetime | None  # of the last finished run
    exit_code: int | None  # of the last finished run
    signal: int | None
    reason: str | None  # waiting: CrashLoopBackOff; exited: the last run's reason
    log_path: Path
    last_termination: Termination | None
