"""Starting, finding and stopping the lab: `kalab lab up|down|status` in Python.

The lab runs as one background process (the daemon) that owns the network namespaces, the programs and the API
server. `up` starts it and returns once it serves; `down` asks it to stop and then sweeps anything a crash left;
`status` reports. Everything is found through the state directory, which carries the lab's prefix.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalab.lab.dataplane import naming
from kalab.lab.dataplane.supervisor import reap_recorded
from kalab.lab.dataplane.topology import sweep
from kalab.model.errors import KalabError

DEFAULT_STATE_DIR = Path("/run/kalab-lab")
STATE_FILE = "daemon.json"
START_TIMEOUT = 60.0


@dataclass(frozen=True)
class LabInfo:
    state_dir: Path
    prefix: str
    pid: int
    url: str
    kubeconfig: Path
    started_at: float
    ready: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "state_dir": str(self.state_dir),
            "prefix": self.prefix,
            "pid": self.pid,
            "url": self.url,
            "kubeconfig": str(self.kubeconfig),
            "started_at": self.started_at,
            "ready": self.ready,
        }


def state_dir_for(state_dir: Path | str | None = None) -> Path:
    path = Path(state_dir or os.environ.get("KALAB_STATE_DIR") or DEFAULT_STATE_DIR)
    if not path.name.startswith("kalab-"):
        raise KalabError(f"The lab's state directory must be named kalab-…, not {path.name}; pick another path.")
    return path


def _proc_start_time(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rpartition(") ")[2].split()
    return int(fields[19]) if len(fields) > 19 and fields[0] not in ("Z", "X") else None


def read_info(state_dir: Path) -> LabInfo | None:
    """The daemon's record, if its process is still the one that wrote it (PID and start time match)."""
    try:
        raw = json.loads((state_dir / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None
    pid = int(raw.get("pid", 0))
    if pid <= 0 or _proc_start_time(pid) != raw.get("proc_start"):
        return None
    return LabInfo(
        state_dir,
        str(raw.get("prefix", naming.DEFAULT_PREFIX)),
        pid,
        str(raw.get("url", "")),
        Path(raw.get("kubeconfig", state_dir / "kubeconfig")),
        float(raw.get("started_at", 0.0)),
        bool(raw.get("ready", False)),
    )


def write_info(state_dir: Path, **fields: Any) -> None:
    """Written by the daemon itself: atomically, 0600 (it names the kubeconfig holding the token)."""
    path = state_dir / STATE_FILE
    current: dict[str, Any] = {}
    with contextlib.suppress(OSError, ValueError):
        current = json.loads(path.read_text())
    current.update(fields)
    current.setdefault("pid", os.getpid())
    current.setdefault("proc_start", _proc_start_time(os.getpid()))
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(current, indent=2) + "\n")
    os.chmod(tmp, 0o600)
    tmp.replace(path)


def recover(state_dir: Path, prefix: str) -> list[str]:
    """Remove what a crashed lab left: its recorded processes (by PID), namespaces and state directory."""
    removed: list[str] = []
    if state_dir.exists():
        reap_recorded(state_dir / "supervisor")
    removed.extend(sweep(prefix).removed)
    if state_dir.exists():
        shutil.rmtree(state_dir, ignore_errors=True)
        removed.append(str(state_dir))
    return removed


def _require_root() -> None:
    if os.geteuid() != 0:
        raise KalabError("The lab builds network namespaces, which needs root; run it with sudo.")


def up(
    state_dir: Path | str | None = None, prefix: str = naming.DEFAULT_PREFIX, timeout: float = START_TIMEOUT
) -> LabInfo:
    """Start the lab in the background and return once its API serves and its nodes are Ready; a no-op if up."""
    _require_root()
    naming.check_prefix(prefix)
    path = state_dir_for(state_dir)
    running = read_info(path)
    if running is not None and running.ready:
        return running
    if running is not None:
        return _wait_ready(path, running.pid, timeout)
    recover(path, prefix)
    path.mkdir(parents=True, mode=0o700)
    log = open(path / "daemon.log", "ab")  # noqa: SIM115 - handed to the child, closed right after
    try:
        child = subprocess.Popen(
            [sys.executable, "-m", "kalab.lab.daemon", "--state-dir", str(path), "--prefix", prefix],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # the lab outlives this command; `down` ends it
        )
    finally:
        log.close()
    return _wait_ready(path, child.pid, timeout)


def _wait_ready(path: Path, pid: int, timeout: float) -> LabInfo:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        info = read_info(path)
        if info is not None and info.ready:
            return info
        if _proc_start_time(pid) is None:
            raise KalabError(f"The lab stopped while starting; its log is {path / 'daemon.log'}: {_last_line(path)}")
        time.sleep(0.05)
    raise KalabError(f"The lab did not become ready within {timeout:g} s; see {path / 'daemon.log'}.")


def _last_line(path: Path) -> str:
    try:
        lines = [ln for ln in (path / "daemon.log").read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return "no log"
    return lines[-1] if lines else "empty log"


def down(state_dir: Path | str | None = None, prefix: str = naming.DEFAULT_PREFIX, timeout: float = 30.0) -> bool:
    """Stop the lab (SIGTERM to the daemon's recorded PID), then sweep leftovers. True if a lab was running."""
    _require_root()
    path = state_dir_for(state_dir)
    info = read_info(path)
    if info is not None:
        prefix = info.prefix
        os.kill(info.pid, signal.SIGTERM)  # the PID is the daemon we started: read_info checked its start time
        deadline = time.monotonic() + timeout
        while _proc_start_time(info.pid) is not None and time.monotonic() < deadline:
            time.sleep(0.05)
        if _proc_start_time(info.pid) is not None:
            os.kill(info.pid, signal.SIGKILL)
    recover(path, prefix)
    return info is not None


def status(state_dir: Path | str | None = None) -> LabInfo | None:
    return read_info(state_dir_for(state_dir))
