"""Throwaway ordinary Unix users for tests, and a Python venv with kalab that such users can run.

    with throwaway_users(2) as (alice, bob):
        done = run_as(alice, ["kalab", "lab", "up", "--name", "x"], venv=shared_venv())

Each user is made with `useradd -m` (named `kalabt<pid>u<n>`) and removed with `userdel -r` afterwards, once no
process of theirs is left: a process still running then is SIGKILLed by the PID found for that uid (never by name)
and reported as a leak. Files the user left in the shared temporary folders are removed with them, since the uid
will be given to the next user created.

The venv is Debian's `/usr/bin/python3 -m venv` (other users cannot read the pyenv Python under /root) in a
world-readable folder outside the repo, named after a hash of pyproject.toml's requirements: the dependencies are
installed once per hash; kalab itself, non-editable (the repo may live where other users cannot go), from a copy
of the working tree whenever that differs from what the venv holds, so it always holds the code under test.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import hashlib
import itertools
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
import tomllib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.paths import REPO

SYSTEM_PYTHON = "/usr/bin/python3"
VENV_PARENT = Path("/var/tmp")
SHARED_TMP = (Path("/tmp"), Path("/var/tmp"), Path("/dev/shm"))
DEPS_MARKER = ".kalab-test-deps"  # the requirements are installed
CODE_MARKER = ".kalab-test-code"  # the hash of the kalab code installed
HOSTING = ("jupyterhub",)  # development requirements the attendees' venv needs too
_counter = itertools.count()


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path

    @property
    def tmp(self) -> Path:
        """The user's TMPDIR (inside the home, so `userdel -r` takes it along)."""
        return self.home / "tmp"


# ---------------------------------------------------------------------------------------------------------------
# Processes of a uid


def _uids(pid: int) -> tuple[int, ...]:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ()
    for line in status.splitlines():
        if line.startswith("Uid:"):
            return tuple(int(v) for v in line.split()[1:])
    return ()


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_bytes().rsplit(b")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return state not in (b"Z", b"X")


def processes_of(uid: int) -> list[int]:
    """Live (non-zombie) processes whose real, effective or saved uid is `uid`."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit() and uid in _uids(int(entry))[:3] and _alive(int(entry)):
            found.append(int(entry))
    return sorted(found)


def describe(pids: Sequence[int]) -> str:
    lines = []
    for pid in pids:
        try:
            args = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except OSError:
            args = "(gone)"
        lines.append(f"{pid}: {args[:160]}")
    return "; ".join(lines)


def end_processes_of(uid: int, timeout: float = 10.0) -> list[str]:
    """SIGKILL every live process of `uid`, by the PIDs found for it, until none is left; what was found, described."""
    seen: list[str] = []
    deadline = time.monotonic() + timeout
    while True:
        pids = processes_of(uid)
        if not pids:
            return seen
        if time.monotonic() > deadline:
            raise AssertionError(f"processes of uid {uid} survived SIGKILL: {describe(pids)}")
        seen.append(describe(pids))
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.05)


# ---------------------------------------------------------------------------------------------------------------
# Users


def _create(name: str) -> User:
    subprocess.run(
        ["useradd", "--create-home", "--shell", "/bin/sh", "--user-group", name],
        check=True,
        capture_output=True,
        text=True,
        timeout=60,
    )
    entry = pwd.getpwnam(name)
    user = User(name, entry.pw_uid, entry.pw_gid, Path(entry.pw_dir))
    user.tmp.mkdir(mode=0o700)
    os.chown(user.tmp, user.uid, user.gid)
    return user


def _remove(user: User) -> list[str]:
    """Remove the user, their home and every file of theirs in the shared temp folders; what leaked, described."""
    leaks = [f"process {p}" for p in end_processes_of(user.uid)]
    done = subprocess.run(["userdel", "--remove", user.name], capture_output=True, text=True, timeout=60)
    with contextlib.suppress(KeyError):
        pwd.getpwnam(user.name)
        raise AssertionError(f"userdel {user.name} failed: {done.stderr.strip()}")
    shutil.rmtree(user.home, ignore_errors=True)
    for folder in SHARED_TMP:
        found = subprocess.run(
            ["find", str(folder), "-xdev", "-mindepth", "1", "-maxdepth", "1", "-uid", str(user.uid)],
            capture_output=True,
            text=True,
            timeout=60,
        ).stdout.split()
        for path in found:
            leaks.append(f"file {path}")
            if os.path.isdir(path) and not os.path.islink(path):
                shutil.rmtree(path, ignore_errors=True)
            else:
                Path(path).unlink(missing_ok=True)
    return leaks


@contextlib.contextmanager
def throwaway_users(count: int = 1) -> Iterator[list[User]]:
    """`count` new ordinary users; removed afterwards, failing the test if any of them left a process or file."""
    made: list[User] = []
    failed = False
    try:
        for _ in range(count):
            name = f"kalabt{os.getpid()}u{next(_counter)}"
            assert len(name) <= 32, name
            made.append(_create(name))
        yield made
    except BaseException:
        failed = True
        raise
    finally:
        leaks = {user.name: _remove(user) for user in made}
        leaked = {name: what for name, what in leaks.items() if what}
        if leaked and not failed:
            raise AssertionError(f"throwaway users left things behind (now removed): {leaked}")


# ---------------------------------------------------------------------------------------------------------------
# The venv such users run kalab from


def _requirements() -> list[str]:
    """What the venv holds besides kalab: pyproject.toml's build requirements, its runtime dependencies, and the
    development requirements that serve attendees (JupyterHub, for tests/support/hub.py)."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())
    dev = project["project"].get("optional-dependencies", {}).get("dev", [])
    hosting = [req for req in dev if re.split(r"[\s<>=!~\[;]", req, maxsplit=1)[0].lower() in HOSTING]
    return [*project["build-system"]["requires"], *project["project"]["dependencies"], *hosting]


def pyproject_hash() -> str:
    """A hash of what pyproject.toml asks the venv to hold (other edits to the file need no rebuild)."""
    return hashlib.sha256("\n".join([SYSTEM_PYTHON, *_requirements()]).encode()).hexdigest()[:16]


def venv_path() -> Path:
    return VENV_PARENT / f"kalab-test-venv-{pyproject_hash()}"


def _run(argv: Sequence[str | Path], timeout: float) -> None:
    done = subprocess.run([str(a) for a in argv], capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise AssertionError(f"{' '.join(map(str, argv))} failed ({done.returncode}): {done.stderr[-3000:]}")


@contextlib.contextmanager
def _venv_lock() -> Iterator[None]:
    """One test session at a time builds or reinstalls the venv."""
    fd = os.open(VENV_PARENT / "kalab-test-venv.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.cache
def shared_venv() -> Path:
    """The venv, holding this session's kalab (built on first use: about a minute per change of the requirements).

    kalab is reinstalled (non-editable, from a snapshot of the working tree) whenever its code differs from what the
    venv holds, so a second test session on the same code leaves the venv its first one is using alone.
    """
    venv = venv_path()
    pip = venv / "bin" / "pip"
    old_umask = os.umask(0o022)  # everything in it must be readable by other users
    try:
        with _venv_lock(), tempfile.TemporaryDirectory(prefix="kalab-test-src-") as tmp:
            if not (venv / DEPS_MARKER).exists():
                for stale in VENV_PARENT.glob("kalab-test-venv-*"):  # built for other requirements
                    if stale.is_dir():
                        shutil.rmtree(stale, ignore_errors=True)
                _run([SYSTEM_PYTHON, "-m", "venv", venv], timeout=300)
                _run([pip, "install", "--quiet", *_requirements()], timeout=1200)
                (venv / DEPS_MARKER).write_text(pyproject_hash() + "\n")
            # What the package is built from, copied, so nothing is written into the working tree.
            src = Path(tmp) / "kalab-src"
            src.mkdir()
            for name in ("pyproject.toml", "README.md"):
                shutil.copy2(REPO / name, src / name)
            shutil.copytree(REPO / "kalab", src / "kalab", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
            code = _tree_hash(src)
            marker = venv / CODE_MARKER
            if not marker.exists() or marker.read_text().strip() != code:
                marker.unlink(missing_ok=True)
                _run(
                    [pip, "install", "--quiet", "--no-deps", "--force-reinstall", "--no-build-isolation", src],
                    timeout=300,
                )
                _run(["chmod", "-R", "a+rX", venv], timeout=120)
                marker.write_text(code + "\n")
    finally:
        os.umask(old_umask)
    return venv


@contextlib.contextmanager
def notebooks_copy() -> Iterator[Path]:
    """The runbook's notebooks in a world-readable temp folder (the repo may not be readable by other users)."""
    folder = Path(tempfile.mkdtemp(prefix="kalab-test-notebooks-", dir=VENV_PARENT))
    try:
        notebooks = folder / "notebooks"
        shutil.copytree(REPO / "notebooks", notebooks, ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
        _run(["chmod", "-R", "a+rX", folder], timeout=60)
        yield notebooks
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------------------------------------------------------
# Running commands as a user


def user_env(user: User, venv: Path | None = None, env: Mapping[str, str] | None = None) -> dict[str, str]:
    """A login-like environment for `user`, nothing inherited from the test process."""
    path = ":".join([*([str(venv / "bin")] if venv else []), "/usr/bin", "/bin"])
    return {
        "HOME": str(user.home),
        "USER": user.name,
        "LOGNAME": user.name,
        "SHELL": "/bin/sh",
        "PATH": path,
        "LANG": "C.UTF-8",
        "TMPDIR": str(user.tmp),
        **(env or {}),
    }


def as_user(
    user: User, argv: Sequence[str], venv: Path | None = None, env: Mapping[str, str] | None = None
) -> list[str]:
    """The command line that runs `argv` as `user` with `user_env`."""
    assigned = [f"{key}={value}" for key, value in user_env(user, venv, env).items()]
    return ["runuser", "-u", user.name, "--", "env", "-i", *assigned, *argv]


def run_as(
    user: User,
    argv: Sequence[str],
    *,
    venv: Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 300,
) -> subprocess.CompletedProcess[str]:
    """Run `argv` as `user` from their home, capturing text output (never raising on a non-zero exit)."""
    return subprocess.run(
        as_user(user, argv, venv, env),
        cwd=user.home,
        capture_output=True,
        text=True,
        encoding="utf-8",
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )


def start_as(
    user: User,
    argv: Sequence[str],
    *,
    venv: Path | None = None,
    env: Mapping[str, str] | None = None,
) -> subprocess.Popen[str]:
    """Like run_as, in the background."""
    return subprocess.Popen(
        as_user(user, argv, venv, env),
        cwd=user.home,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
        encoding="utf-8",
    )
