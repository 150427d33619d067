"""Reading /proc: a process's start time (to tell a live PID from a reused one) and which PID namespace it is in.

The start time (field 22 of /proc/<pid>/stat, clock ticks since boot) reads the same from inside a lab's PID
namespace and from the host, which is what lets a PID recorded inside a lab be checked and signalled from outside.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Stat:
    state: str
    pgrp: int
    session: int
    starttime: int


def read_stat(pid: int) -> Stat | None:
    """/proc/<pid>/stat's fields the lab uses, or None when the process is gone (or not ours to read)."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name may hold spaces and parentheses, so split after its last ')'.
    fields = raw[raw.rindex(b")") + 2 :].split()
    return Stat(fields[0].decode(), int(fields[2]), int(fields[3]), int(fields[19]))


def starttime(pid: int) -> int | None:
    """The start time of live process `pid`; None when it is gone or a zombie."""
    stat = read_stat(pid)
    return stat.starttime if stat is not None and stat.state not in ("Z", "X") else None


def boot_id() -> str:
    return Path("/proc/sys/kernel/random/boot_id").read_text().strip()


def all_pids() -> Iterator[int]:
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            yield int(entry)


def pid_namespace(pid: int) -> tuple[int, int] | None:
    """Which PID namespace `pid` lives in, as (device, inode) of /proc/<pid>/ns/pid; None when it is gone."""
    try:
        st = os.stat(f"/proc/{pid}/ns/pid")
    except OSError:  # gone meanwhile, or another user's process
        return None
    return st.st_dev, st.st_ino


def pid_namespace_members(namespace: tuple[int, int]) -> list[int]:
    """The live processes of a PID namespace (as pid_namespace names it), as this process numbers them."""
    return [pid for pid in all_pids() if pid_namespace(pid) == namespace and starttime(pid) is not None]


def pid_in_namespace_of(top: int, inner_pid: int) -> int | None:
    """The host PID of the process that is `inner_pid` inside the PID namespace whose init is `top`, or None.

    /proc/<pid>/status lists a process's PID in each nested PID namespace (NSpid); the last one is its own.
    """
    wanted = pid_namespace(top)
    if wanted is None:
        return None
    for pid in pid_namespace_members(wanted):
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("NSpid:") and int(line.split()[-1]) == inner_pid:
                return pid
    return None


def children(pid: int) -> list[int]:
    """The direct children of `pid` (its main thread's)."""
    try:
        return [int(p) for p in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except OSError:
        return []
