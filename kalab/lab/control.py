"""Starting, finding and stopping labs: `kalab lab up|down|status|list` in Python.

Every lab has a name (`default`, or $KALAB_LAB) and a state directory of the user who started it, mode 0700:
``$XDG_STATE_HOME/kalab/<name>``, i.e. ``~/.local/state/kalab/<name>`` (``$KALAB_HOME`` replaces the parent).
Not $XDG_RUNTIME_DIR: systemd removes it when the user's last session ends, while a lab (like any process of the
user) runs on, and would then be running with nobody able to find it.

    lab.json     written by `up`: the lab's top process (PID and start time), what `down` ends
    daemon.json  written by the lab itself: its API URL, its kubeconfig, whether it is ready
    kubeconfig   0600, holding the bearer token;  daemon.log;  pki/, supervisor/, pods/ …

A lab is one namespace tree (dataplane/tree.py) whose PID 1 is the lab daemon: ending that process ends every
process of the lab and its network, so `down` is SIGTERM, a wait, SIGKILL if need be, and removing the directory.
Only the API server's socket is on the host: `up` binds it on 127.0.0.1 (an ephemeral port) and hands it in.
One lock per name (a file beside the directories) keeps two commands on one lab from interleaving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from kalab.lab.dataplane import procfs, tree
from kalab.lab.dataplane.entry import Entry
from kalab.lab.prerequisites import lab_problem
from kalab.model.errors import KalabError

DEFAULT_NAME = "default"
NAME_ENV = "KALAB_LAB"
HOME_ENV = "KALAB_HOME"
LAB_FILE = "lab.json"
DAEMON_FILE = "daemon.json"
START_TIMEOUT = 60.0
LOCK_TIMEOUT = 120.0
_NAME = re.compile(r"^[a-z0-9](?:[a-z0-9-]{0,30}[a-z0-9])?$")

LabState = Literal["ready", "starting", "down"]


def lab_name(name: str | None = None) -> str:
    """The lab a command acts on: `name`, else $KALAB_LAB, else `default`; checked like a DNS label."""
    chosen = name or os.environ.get(NAME_ENV) or DEFAULT_NAME
    if not _NAME.match(chosen):
        shown = chosen if len(chosen) <= 40 else chosen[:40] + "…"
        raise KalabError(
            f'The lab name "{shown}" is not allowed; use 1–32 lower-case letters, digits and "-", e.g. "alice".'
        )
    return chosen


def labs_home() -> Path:
    """Where this user's labs keep their state directories."""
    if os.environ.get(HOME_ENV):
        return Path(os.environ[HOME_ENV])
    return Path(os.environ.get("XDG_STATE_HOME") or Path.home() / ".local" / "state") / "kalab"


def state_dir(name: str | None = None) -> Path:
    return labs_home() / lab_name(name)


@dataclass(frozen=True)
class LabInfo:
    """One lab as `kalab lab status` shows it."""

    name: str
    state: LabState
    state_dir: Path
    pid: int | None = None  # the lab's top process (PID 1 of its tree, as the host numbers it)
    top_start: int | None = None
    api: str | None = None
    kubeconfig: Path | None = None
    started_at: float | None = None

    @property
    def ready(self) -> bool:
        return self.state == "ready"

    def entry(self) -> Entry:
        """How to reach this lab's nodes from this process (see dataplane/entry.py)."""
        if self.pid is None or self.state == "down":
            raise KalabError(f"The lab {self.name} is not running; start it with `kalab lab up --name {self.name}`.")
        return Entry(self.pid, self.top_start)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "state": self.state,
            "ready": self.ready,
            "api": self.api,
            "kubeconfig": str(self.kubeconfig) if self.kubeconfig else None,
            "pid": self.pid,
            "state_dir": str(self.state_dir),
            "started_at": self.started_at,
        }


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def write_json(path: Path, fields: dict[str, Any]) -> None:
    """Atomically, 0600 (these files name the kubeconfig that holds the token)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(fields, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def write_info(path: Path, **fields: Any) -> None:
    """What the lab daemon reports about itself (daemon.json), merged into what it reported before."""
    write_json(path / DAEMON_FILE, {**_read_json(path / DAEMON_FILE), **fields})


def status(name: str | None = None) -> LabInfo:
    """The lab's state: ready, starting (its tree lives, its API does not serve yet) or down."""
    return status_at(state_dir(name))


def status_at(path: Path) -> LabInfo:
    """The state of the lab whose state directory is `path` (as a lab's kubeconfig names it)."""
    name = path.name
    top = _read_json(path / LAB_FILE)
    pid, start = top.get("pid"), top.get("start")
    if not isinstance(pid, int) or procfs.starttime(pid) != start:
        return LabInfo(name, "down", path)
    daemon = _read_json(path / DAEMON_FILE)
    return LabInfo(
        name,
        "ready" if daemon.get("ready") else "starting",
        path,
        pid,
        start,
        daemon.get("url"),
        Path(daemon["kubeconfig"]) if daemon.get("kubeconfig") else None,
        top.get("started_at"),
    )


def list_labs() -> list[LabInfo]:
    """Every lab of this user that has a state directory, running or not, by name."""
    home = labs_home()
    if not home.is_dir():
        return []
    return [status(p.name) for p in sorted(home.iterdir()) if p.is_dir() and _NAME.match(p.name)]


@contextlib.contextmanager
def _locked(name: str, timeout: float = LOCK_TIMEOUT) -> Iterator[None]:
    """Hold the lab's lock; a second command on the same lab waits here for the first to finish."""
    home = labs_home()
    home.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(home / f".{name}.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise KalabError(
                        f"Another kalab command has been working on the lab {name} for {timeout:g} s; "
                        "wait for it to finish, then try again."
                    ) from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)  # closing releases the lock


def up(name: str | None = None, timeout: float = START_TIMEOUT) -> LabInfo:
    """Start the lab in the background and return once its API serves and its nodes are Ready; a no-op if up."""
    name = lab_name(name)
    with _locked(name):
        info = status(name)
        if info.state == "ready":
            return info
        if info.state == "starting":  # an earlier `up` was interrupted after launching it
            return _wait_ready(name, timeout)
        problem = lab_problem()
        if problem:
            raise KalabError(problem)
        path = state_dir(name)
        shutil.rmtree(path, ignore_errors=True)  # what a killed lab left: files only, its tree is gone
        path.mkdir(parents=True, mode=0o700)
        _launch(name, path)
        return _wait_ready(name, timeout)


def kubeconfig_for(name: str | None = None) -> Path:
    """The lab plugin's entry point for kalab.cluster.attach: start (or find) the lab and give its kubeconfig."""
    info = up(name)
    if info.kubeconfig is None:
        raise KalabError(f"The lab {info.name} is up but wrote no kubeconfig; restart it with `kalab lab down` and up.")
    return info.kubeconfig


def _launch(name: str, path: Path) -> None:
    listener = socket.create_server(("127.0.0.1", 0), backlog=128)
    daemon = [sys.executable, "-m", "kalab.lab.daemon", "--name", name, "--state-dir", str(path)]
    try:
        with open(path / "daemon.log", "ab") as log:
            child = subprocess.Popen(
                tree.tree_command([*daemon, "--listen-fd", str(listener.fileno())], keep=[path]),
                pass_fds=[listener.fileno()],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # the lab outlives this command; `down` ends it
            )
    finally:
        listener.close()  # the lab holds its own copy
    top = tree.top_process(child.pid)
    started = time.time()
    write_json(
        path / LAB_FILE,
        {
            "name": name,
            "pid": top,
            "start": procfs.starttime(top),
            "unshare": child.pid,
            "unshare_start": procfs.starttime(child.pid),
            "started_at": started,
        },
    )


def _wait_ready(name: str, timeout: float) -> LabInfo:
    deadline = time.monotonic() + timeout
    path = state_dir(name)
    while time.monotonic() < deadline:
        info = status(name)
        if info.state == "ready":
            return info
        if info.state == "down":
            raise KalabError(f"The lab {name} stopped while starting: {_last_line(path)} (log: {path / 'daemon.log'}).")
        time.sleep(0.05)
    raise KalabError(f"The lab {name} did not become ready within {timeout:g} s; see {path / 'daemon.log'}.")


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in (path / "daemon.log").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1].rstrip(".") if lines else "empty log"


def down(name: str | None = None, timeout: float = 30.0) -> bool:
    """Stop the lab (SIGTERM to its top process, SIGKILL after `timeout`) and remove its state directory.

    True if it was running. The kernel ends the rest: every process of the tree, and with them its namespaces.
    """
    name = lab_name(name)
    with _locked(name):
        info = status(name)
        if info.pid is not None and info.state != "down":
            _end(info.pid, info.top_start, timeout)
        record = _read_json(info.state_dir / LAB_FILE)
        _reap(record.get("unshare"), record.get("unshare_start"))
        shutil.rmtree(info.state_dir, ignore_errors=True)
    return info.state != "down"


def _end(pid: int, start: int | None, timeout: float) -> None:
    """End the tree whose PID 1 is `pid` (checked by start time, so a reused PID is never signalled)."""
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        if procfs.starttime(pid) != start:
            return
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, sig)
        deadline = time.monotonic() + wait
        while procfs.starttime(pid) == start and time.monotonic() < deadline:
            time.sleep(0.02)
    if procfs.starttime(pid) == start:
        raise KalabError(f"The lab's top process {pid} survived SIGKILL; check it with `ps -p {pid}`.")


def _reap(unshare_pid: object, unshare_start: object) -> None:
    """Wait for the lab's `unshare`, which exits just after the tree's PID 1 it waits on, so that nothing of the
    lab is left when `down` returns; collect it when this very process started the lab (a test, a notebook)."""
    if not isinstance(unshare_pid, int):
        return
    deadline = time.monotonic() + 5.0
    ours = True
    while time.monotonic() < deadline:
        if ours:
            try:
                if os.waitpid(unshare_pid, os.WNOHANG)[0]:
                    return
            except ChildProcessError:  # not our child (started by another command), or already collected
                ours = False
        if not ours and (not isinstance(unshare_start, int) or procfs.starttime(unshare_pid) != unshare_start):
            # Gone, or a zombie its new parent collects (a zombie holds nothing). Checked by start time, so a
            # reused PID is never waited on.
            return
        time.sleep(0.02)
