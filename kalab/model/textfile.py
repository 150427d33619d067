"""Reading a text file a user named, with one-sentence errors: regular files only, so a FIFO never blocks."""

from __future__ import annotations

import os
import stat
from typing import Any

import yaml

from kalab.model.errors import KalabError
from kalab.model.wording import shorten


def read_text(path: str | os.PathLike[str], what: str, hint: str) -> str:
    """The UTF-8 text of `path`; `what` names the file in messages ("The kubeconfig"), `hint` says what to pass."""
    shown = shorten(os.fspath(path))
    try:
        # Check the kind before opening: opening a FIFO for reading waits for a writer forever.
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise KalabError(f"{what} {shown} does not exist; {hint}.") from None
    except (OSError, ValueError) as err:
        raise KalabError(f"{what} {shown} cannot be read ({_reason(err)}); {hint}.") from None
    if stat.S_ISDIR(mode):
        raise KalabError(f"{what} {shown} is a directory; {hint}.")
    if not stat.S_ISREG(mode):
        raise KalabError(f"{what} {shown} is not a regular file (a pipe, socket or device); {hint}.")
    try:
        with open(path, "rb") as file:
            data = file.read()
    except OSError as err:
        raise KalabError(f"{what} {shown} cannot be read ({_reason(err)}); {hint}.") from None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise KalabError(f"{what} {shown} is not UTF-8 text (binary data?); {hint}.") from None


def parse_yaml_all(text: str, what: str, path: str | os.PathLike[str], hint: str) -> list[Any]:
    """Every non-empty YAML document in `text`, or one sentence saying where the syntax breaks."""
    try:
        return [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None) or getattr(err, "context_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise KalabError(f"{what} {shorten(os.fspath(path))} is not valid YAML{where}; {hint}.") from None


def _reason(err: BaseException) -> str:
    return str(getattr(err, "strerror", None) or err.__class__.__name__)
