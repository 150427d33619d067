"""What `registry.redhat.io/openshift4/ose-keepalived-ipfailover` runs in the lab: the real /usr/sbin/keepalived.

The operator's DaemonSet starts it as
`keepalived --log-console --log-detail --dont-fork --config-id=${POD_NAME} --use-file=... --pid=...` (FACTS.md §2).
In a cluster each pod has its own /tmp and /run; in the lab every node's keepalived shares the host's file system and
PID namespace, so each instance also needs its own dump directory and every pid file keepalived knows about.
What was checked on keepalived 2.2.7 here and shaped the flags below:

- At start-up keepalived reads all four pid files (main, vrrp, checkers, bfd) and refuses to run ("daemon is already
  running") if any of them names a live process. The defaults are host-wide (/run/checkers.pid, /run/bfd.pid), so a
  second lab node, or a keepalived on the host, would block the next one: every pid file goes into the pod's own dir.
- Dumps (signal 36 → keepalived.json, SIGUSR1/SIGUSR2 → keepalived.data/.stats) go to $TMPDIR; keepalived writes a
  temporary file there and renames it into place, so a reader never sees half a dump.
- The main process (`--pid`) forwards signal 36, SIGUSR1/2 and SIGHUP (reload) to its VRRP child (`--vrrp_pid`),
  which does the work; signalling the main PID is enough, and it is the PID the exporter and reloader use.
- With no /dev/log (no syslog daemon, as in a container) glibc's syslog falls back to /dev/console: without
  `--no-syslog` every lab keepalived would write its log to the host's console as well as to its own stderr.
- SIGKILL of the main process alone is not a crash: the VRRP child notices its parent died, sends priority 0 and
  removes its VIPs like a graceful stop. A real crash (the container dying) kills the whole process group.
"""

from __future__ import annotations

import functools
import subprocess
from pathlib import Path
from typing import Final

IMAGE: Final = "registry.redhat.io/openshift4/ose-keepalived-ipfailover"
KEEPALIVED: Final = Path("/usr/sbin/keepalived")
MAIN_PID_FILE: Final = "keepalived.pid"  # the name the operator's pod uses (/etc/keepalived.pid/keepalived.pid)
DEFAULT_MAIN_PID_FILE: Final = "/run/keepalived.pid"  # keepalived's own default when started without --pid
JSON_DUMP: Final = "keepalived.json"
# SIGRTMIN+4 in the kernel's numbering (glibc's SIGRTMIN is 34, so Python's signal.SIGRTMIN + 4 would be wrong).
DEFAULT_JSON_SIGNAL: Final = 36
_PATH: Final = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def keepalived_command(pod_name: str, config: Path, pid_dir: Path, tmp_dir: Path) -> tuple[list[str], dict[str, str]]:
    """argv and the complete environment for one pod's keepalived (the caller creates pid_dir and tmp_dir).

    Run it inside the node's network namespace (`ip netns exec <node> *argv`); keepalived stays in the foreground,
    so the PID started is the main keepalived process, the one `pid_file(pid_dir)` names.
    """
    argv = [
        str(KEEPALIVED),
        "--log-console",  # operator's flag: log to stderr, which is the container log
        "--log-detail",  # operator's flag (-D): detailed messages
        "--dont-fork",  # operator's flag: stay in the foreground so the started PID is keepalived's main PID
        "--no-syslog",  # lab only: without a syslog daemon glibc would copy every line to the host's /dev/console
        f"--config-id={pod_name}",  # operator's flag: selects the spreadvips `@<pod>` / `@^<pod>` lines
        f"--use-file={config}",  # operator's flag: the config-setup output, not the ConfigMap itself
        f"--pid={pid_file(pid_dir)}",  # operator's flag: the main PID, which the reloader and exporter signal
        # Lab only: keepalived refuses to start while any of its pid files names a live process, and the defaults
        # (/run/vrrp.pid, /run/checkers.pid, /run/bfd.pid) are shared by every keepalived on the host.
        f"--vrrp_pid={pid_dir / 'vrrp.pid'}",
        f"--checkers_pid={pid_dir / 'checkers.pid'}",
        f"--bfd_pid={pid_dir / 'bfd.pid'}",
    ]
    env = {
        "PATH": _PATH,
        "POD_NAME": pod_name,  # the pod spec's downward-API variable; the shell in the image expands it
        "TMPDIR": str(tmp_dir),  # where the dumps go: the pod's `stats` volume, shared with the exporter
    }
    return argv, env


def pid_file(pid_dir: Path) -> Path:
    """The main keepalived PID file inside a pod's pid dir (what `--pid` names)."""
    return pid_dir / MAIN_PID_FILE


def json_dump(tmp_dir: Path) -> Path:
    """Where keepalived writes its JSON dump on signal 36, given the TMPDIR it was started with."""
    return tmp_dir / JSON_DUMP


def config_test_command(config: Path, pod_name: str) -> list[str]:
    """`keepalived -t`: parse the config as this pod would (same config-id) and exit non-zero on errors."""
    return [str(KEEPALIVED), "--config-test", f"--config-id={pod_name}", f"--use-file={config}"]


@functools.cache
def json_signal() -> int:
    """The signal number that makes keepalived write its JSON dump, as the installed keepalived reports it."""
    try:
        done = subprocess.run(
            [str(KEEPALIVED), "--signum=JSON"], capture_output=True, text=True, timeout=5, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return DEFAULT_JSON_SIGNAL
    answer = done.stdout.strip()
    # A keepalived built without JSON support answers an error instead of a number.
    return int(answer) if done.returncode == 0 and answer.isdigit() else DEFAULT_JSON_SIGNAL


def _is_live_keepalived(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    # "pid (comm) state …": a zombie (Z) or dead (X) process holds no daemon, whatever its name.
    comm, _, rest = stat.partition(" (")[2].rpartition(") ")
    return comm == "keepalived" and rest[:1] not in ("Z", "X")


def clear_stale_pid_files(pid_dir: Path) -> list[Path]:
    """Remove pid files whose keepalived is gone, so a restarted container is not refused as "already running".

    In a cluster a restarted container starts in a fresh PID namespace. In the lab, a crashed keepalived's VRRP
    child can linger as a zombie until the host's init reaps it, and keepalived counts a zombie as running.
    """
    removed: list[Path] = []
    for path in sorted(pid_dir.glob("*.pid")):
        try:
            pid = int(path.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            pid = 0
        if pid <= 0 or not _is_live_keepalived(pid):
            path.unlink(missing_ok=True)
            removed.append(path)
    return removed
