"""How commands print objects (YAML documents by default, JSON with --json) and write result files safely."""

from __future__ import annotations

import contextlib
import errno
import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from kalab.model.errors import KalabError
from kalab.model.wording import shorten


def emit(objects: Sequence[Any] | Any, as_json: bool) -> None:
    """Print one object or a list of manifests; several manifests become a YAML stream or a JSON list."""
    if as_json:
        sys.stdout.write(json.dumps(objects, indent=2) + "\n")
        return
    docs = list(objects) if isinstance(objects, list | tuple) else [objects]
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, explicit_start=True))


def check_out_dir(path: str, option: str = "--out") -> Path:
    """`path` as a directory results can go to (it exists or can be created), checked before any work starts.

    Nothing is created here, so a command that fails later leaves no empty directory behind.
    """
    target = Path(path).expanduser()
    shown = shorten(path)
    if target.exists() and not target.is_dir():
        raise KalabError(f"{option} {shown} is a file, not a directory; give a directory for the results.")
    existing = target
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise KalabError(
            f"{option} {shown} cannot be created because {shorten(existing)} is a file; give another directory."
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise KalabError(f"{option} {shown} is not writable ({shorten(existing)} is read-only to you); give another.")
    _try_creating(target, existing, f"{option} {shown}")
    return target


def _try_creating(target: Path, existing: Path, what: str) -> None:
    """Create the missing directories down to `target` and remove them again: permissions alone do not tell
    (e.g. /proc looks writable to root), and leaving them would leave empty directories if the work fails."""
    missing = [d for d in [target, *target.parents] if d != existing and existing in d.parents]
    created: list[Path] = []
    try:
        for folder in reversed(missing):
            folder.mkdir()
            created.append(folder)
    except OSError as err:
        raise KalabError(
            f"{what} cannot be created ({err.strerror or type(err).__name__}); give another directory."
        ) from None
    finally:
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()


def check_out_file(path: str, option: str = "--out") -> Path:
    """`path` as a file a result can be written to, checked before any work starts."""
    target = Path(path).expanduser()
    shown = shorten(path)
    if target.is_dir():
        raise KalabError(f"{option} {shown} is a directory; give a file name, e.g. {shorten(target / 'probe.csv')}.")
    if target.exists() and not target.is_file():
        raise KalabError(f"{option} {shown} is not a regular file (a pipe, socket or device); give a file name.")
    folder = target.parent
    if not folder.is_dir():
        raise KalabError(f"{option} {shown} cannot be written: {shorten(folder)} is not a directory; create it first.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise KalabError(f"{option} {shown} cannot be written: {shorten(folder)} is read-only to you; give another.")
    return target


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """A temporary path next to `target` to write to; it becomes `target` (os.replace) only if the block ends well.

    An interruption mid-write leaves the old file (or none), never half a file; a write that fails (a full disk)
    is one sentence, with the old file still in place.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{target.name}.", suffix=target.suffix, dir=target.parent)
    os.close(fd)
    temp = Path(name)
    os.chmod(temp, 0o666 & ~_umask())  # mkstemp makes it private; the result gets the mode a plain write gives
    try:
        yield temp
        os.replace(temp, target)
    except OSError as err:
        if err.errno not in _NO_ROOM:
            raise
        # A full disk or a quota: the write or the rename failed, and target is unchanged.
        reason = err.strerror or type(err).__name__
        raise KalabError(
            f"Writing {shorten(target)} failed ({reason}); free some space or give another --out, then run again."
        ) from None
    finally:
        temp.unlink(missing_ok=True)


def write_text_atomic(target: Path, text: str) -> None:
    with atomic_path(target) as temp:
        temp.write_text(text, encoding="utf-8")


_NO_ROOM = {errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS}


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it; put it straight back
    os.umask(mask)
    return mask
