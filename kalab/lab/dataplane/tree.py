"""A lab's private namespace tree: its own user, mount, PID and network namespaces, made with util-linux `unshare`.

    kalab lab up ─► unshare ─► PID 1 of the lab: `python -m kalab.lab.dataplane.tree -- <program>`
                               · a private tmpfs on /run, so /run/netns holds this lab's namespaces only
                               · starts <program> (the lab daemon, or a throwaway failover scenario), reaps
                                 orphans, and leaves with the program
                                   └ keepalived, pods, kube-proxy rules … in network namespaces below

Why: the kernel, not cleanup code, guarantees that when PID 1 ends every process of the lab ends, that the lab's
network namespaces vanish with the last of them, that the host's network, its /run/netns, links and iptables are
never touched (the tree's root may only configure namespaces it created), and that it all works without root: the
user who starts a lab is root inside it and nowhere else. Many labs live side by side, each with the same names.

`unshare --kill-child` ties PID 1 to the `unshare` process too, so killing either one ends the lab.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from kalab.lab.dataplane import procfs
from kalab.model.errors import KalabError

MARK = "KALAB_LAB_TREE"  # set in the environment of everything started inside a tree
PRIVATE_TMP = Path("/run/kalab-tmp")  # TMPDIR inside a tree: scratch files vanish with the lab
SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
# The kernel settings that forbid unprivileged user namespaces (Ubuntu 24.04 sets the first by default).
APPARMOR_RESTRICTION = Path("/proc/sys/kernel/apparmor_restrict_unprivileged_userns")
MAX_USER_NAMESPACES = Path("/proc/sys/user/max_user_namespaces")
_MS_BIND = 4096
_MS_REC = 16384
_libc = ctypes.CDLL(None, use_errno=True)
UNSHARE = [
    "unshare",
    "--user",
    "--map-root-user",
    "--mount",
    "--propagation",
    "private",
    "--pid",
    "--fork",
    "--kill-child",
    "--mount-proc",
    "--net",
]


def inside() -> bool:
    """Whether this process runs inside a lab's tree."""
    return os.environ.get(MARK) == "1"


def with_sbin(path: str) -> str:
    """`path` plus the sbin directories (an ordinary user's PATH lacks them; keepalived and sysctl live there)."""
    parts = [p for p in path.split(os.pathsep) if p]
    return os.pathsep.join(parts + [d for d in SBIN if d not in parts])


def tree_command(argv: Sequence[str], keep: Sequence[Path] = ()) -> list[str]:
    """The command line that runs `argv` as PID 1 of a new tree; paths in `keep` under /run stay visible in it."""
    kept = [arg for path in keep for arg in ("--keep", str(path))]
    return [*UNSHARE, "--", sys.executable, "-m", "kalab.lab.dataplane.tree", *kept, "--", *argv]


def top_process(unshare_pid: int, timeout: float = 10.0) -> int:
    """The tree's PID 1 as the host sees it: the one child `unshare` forks."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = procfs.children(unshare_pid)
        if found:
            return found[0]
        if procfs.starttime(unshare_pid) is None:
            break
        time.sleep(0.005)
    raise KalabError(
        "The lab's namespaces could not be created; run `kalab doctor` to see whether this machine allows "
        "unprivileged user namespaces."
    )


def userns_problem() -> str | None:
    """Why this user cannot make a tree here (one sentence with the fix), or None when it can."""
    try:
        done = subprocess.run([*UNSHARE, "--", sys.executable, "-c", ""], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        return "util-linux `unshare` is missing; an administrator installs it with `apt-get install util-linux`."
    except subprocess.TimeoutExpired:
        return "Creating a namespace tree hung for 10 s; check the machine's load and try again."
    if done.returncode == 0:
        return None
    if _sysctl(APPARMOR_RESTRICTION) == "1":
        return (
            "AppArmor restricts unprivileged user namespaces here (Ubuntu 24.04's default); an administrator allows "
            "them with `sysctl -w kernel.apparmor_restrict_unprivileged_userns=0`."
        )
    if _sysctl(MAX_USER_NAMESPACES) == "0":
        return (
            "User namespaces are disabled here; an administrator enables them with "
            "`sysctl -w user.max_user_namespaces=15000`."
        )
    detail = (done.stderr.strip().splitlines() or ["no message"])[-1]
    return f"This user cannot create namespaces ({detail}); ask an administrator to allow unprivileged user namespaces."


def _sysctl(path: Path) -> str | None:
    try:
        return path.read_text().strip()
    except OSError:
        return None


def _mount(source: str, target: str, fstype: str | None, flags: int, data: str | None) -> None:
    # No Python library wraps mount(2); the syscall is one line through libc.
    if (
        _libc.mount(
            source.encode(),
            target.encode(),
            fstype.encode() if fstype else None,
            flags,
            data.encode() if data else None,
        )
        != 0
    ):
        err = ctypes.get_errno()
        raise OSError(err, f"mount {target}: {os.strerror(err)}")


def private_run(keep: Sequence[Path]) -> None:
    """Give this mount namespace its own empty /run, with /run/user and the `keep` paths of the host's /run still
    there (held open across the mount, then bound back at the same paths)."""
    wanted = [Path("/run/user"), *(Path(p) for p in keep)]
    held = [
        (path, os.open(path, os.O_PATH | os.O_DIRECTORY))
        for path in wanted
        if path.is_relative_to("/run") and path.is_dir()
    ]
    _mount("kalab-run", "/run", "tmpfs", 0, "mode=0755")
    for path, fd in held:
        path.mkdir(parents=True, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", str(path), None, _MS_BIND | _MS_REC, None)
        os.close(fd)
    Path("/run/netns").mkdir()
    PRIVATE_TMP.mkdir(mode=0o1777)


def main(argv: Sequence[str] | None = None) -> int:
    """PID 1 of a tree: make /run private, bring up loopback, start the program, then do an init's duties."""
    parser = argparse.ArgumentParser(prog="python -m kalab.lab.dataplane.tree")
    parser.add_argument("--keep", action="append", default=[], type=Path)
    parser.add_argument("program", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    program = args.program[1:] if args.program[:1] == ["--"] else args.program
    if not program:
        parser.error("give the program to run after --")
    private_run(args.keep)
    subprocess.run(["ip", "link", "set", "lo", "up"], check=True, timeout=10)
    env = {**os.environ, MARK: "1", "TMPDIR": str(PRIVATE_TMP), "PATH": with_sbin(os.environ.get("PATH", ""))}
    child = os.fork()
    if child == 0:
        try:
            os.execvpe(program[0], program, env)
        finally:
            os._exit(127)
    return _init(child)


def _init(program: int) -> int:
    """What PID 1 owes its namespace: pass stop signals on to the program, and reap every process that ends.

    Processes whose parent dies are handed to PID 1 (keepalived's VRRP child after a crash, a command whose
    `nsenter` went first); without this they would stay zombies for the lab's whole life. When the program ends,
    PID 1 leaves with its status, and the kernel ends everything else in the tree.
    """
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: os.kill(program, signum))
    while True:
        pid, status = os.wait()  # PEP 475: retried after a signal handler runs
        if pid == program:
            return os.waitstatus_to_exitcode(status) % 256  # killed by signal N: 256 - N, like a shell's status


if __name__ == "__main__":
    sys.exit(main())
