"""The PID records the supervisor keeps, and crash recovery from them.

Descendants of a program are not covered by the death signal (children.py), so every started PID is recorded
on disk with its start time from /proc/<pid>/stat and the boot ID. After a crash, `reap_recorded` uses those
records to kill exactly those sessions: never by name, and never a reused PID (checked by start time,
signalled through a pidfd).
"""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal as _signal
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from kalab.lab.dataplane.procfs import all_pids, boot_id, read_stat
from kalab.model.errors import KalabError


@dataclass(frozen=True)
class ProcessRecord:
    """What `reap_recorded` needs to find a started program again, and to be sure it is the same one."""

    name: str
    pid: int
    starttime: int  # field 22 of /proc/<pid>/stat, clock ticks since boot
    boot_id: str
    argv: tuple[str, ...]
    netns: str | None
    started_at: str

    @property
    def filename(self) -> str:
        return f"{self.pid}-{self.starttime}.json"


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat().replace("+00:00", "Z")


def read_records(state_dir: Path) -> list[ProcessRecord]:
    """The PID records a supervisor using `state_dir` left behind (unreadable ones are skipped)."""
    records = []
    for path in sorted((Path(state_dir) / "pids").glob("*.json")):
        try:
            data = json.loads(path.read_text())
            data["argv"] = tuple(data["argv"])
            records.append(ProcessRecord(**data))
        except (OSError, ValueError, TypeError, KeyError):
            continue
    return records


def write_record(state_dir: Path, record: ProcessRecord) -> Path:
    """Store a record in `state_dir`'s pids/: the supervisor's for each program it starts, a tool's for a process
    it adopts. Written aside and renamed into place, so `read_records` never sees half a record."""
    path = Path(state_dir) / "pids" / record.filename
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(record)))
    tmp.replace(path)
    return path


def record_for(name: str, pid: int, argv: Sequence[str] = (), netns: str | None = None) -> ProcessRecord:
    """A record describing the live process `pid` as it is now."""
    stat = read_stat(pid)
    if stat is None:
        raise KalabError(f"Process {pid} does not exist, so it cannot be recorded.")
    return ProcessRecord(name, pid, stat.starttime, boot_id(), tuple(argv), netns, rfc3339(time.time()))


def _session_members(record: ProcessRecord) -> list[int]:
    """PIDs that certainly belong to the session the recorded program started.

    If the recorded PID is alive with another start time, the number was reused — which the kernel allows only
    once no process is left in the old session — so there is nothing to kill. Otherwise every live process whose
    session ID is the recorded PID and that started no earlier than it is one of ours: a session ID cannot be
    handed to a new process while any member of the old session lives.
    """
    leader = read_stat(record.pid)
    if leader is not None and leader.starttime != record.starttime:
        return []
    members = []
    for pid in all_pids():
        stat = read_stat(pid)
        if stat and stat.session == record.pid and stat.state != "Z" and stat.starttime >= record.starttime:
            members.append(pid)
    return members


def _kill_verified(pid: int, record: ProcessRecord) -> int | None:
    """SIGKILL `pid` through a pidfd after re-checking it (no PID reuse race); return the pidfd to wait on."""
    try:
        pidfd = os.pidfd_open(pid)
    except OSError:
        return None
    stat = read_stat(pid)
    if stat is None or stat.session != record.pid or stat.starttime < record.starttime:
        os.close(pidfd)
        return None
    with contextlib.suppress(ProcessLookupError):
        _signal.pidfd_send_signal(pidfd, _signal.SIGKILL)
    return pidfd


def reap_recorded(state_dir: Path, timeout: float = 5.0) -> list[ProcessRecord]:
    """Kill what a crashed supervisor started from `state_dir`, by recorded PID and start time.

    Returns the records whose session still had live processes. Every record is removed once its session is gone;
    records from an earlier boot are simply dropped.
    """
    reaped = []
    boot = boot_id()
    deadline = time.monotonic() + timeout
    for record in read_records(state_dir):
        path = Path(state_dir) / "pids" / record.filename
        if record.boot_id == boot:
            # A member might fork while we kill, so repeat until the session is empty.
            found = False
            for _ in range(10):
                members = _session_members(record)
                if not members:
                    break
                found = True
                pidfds = [fd for fd in (_kill_verified(pid, record) for pid in members) if fd is not None]
                try:
                    _wait_pidfds(pidfds, deadline)
                finally:
                    for fd in pidfds:
                        os.close(fd)
            else:
                raise KalabError(f"Process {record.pid} ({record.name}) survived repeated SIGKILLs; check it by hand.")
            if found:
                reaped.append(record)
        path.unlink(missing_ok=True)
    return reaped


def _wait_pidfds(pidfds: list[int], deadline: float) -> None:
    """Wait until each pidfd reports its process exited (a pidfd turns readable then, child of ours or not)."""
    poller = select.poll()
    for fd in pidfds:
        poller.register(fd, select.POLLIN)
    pending = set(pidfds)
    while pending:
        left = deadline - time.monotonic()
        if left <= 0:
            raise KalabError("Recorded lab processes did not die within the reap timeout; check them by hand.")
        for fd, _ in poller.poll(left * 1000):
            pending.discard(fd)
            poller.unregister(fd)
