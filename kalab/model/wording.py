"""Keeping messages to one readable line: user-given values are shortened and kept on one line."""

from __future__ import annotations

import re

LONGEST = 80
_LONG_WORD = re.compile(rf"\S{{{LONGEST + 1},}}")


def shorten(value: object, longest: int = LONGEST) -> str:
    """`value` as text on one line, cut to about `longest` characters with a note of how long it was."""
    text = str(value).replace("\r", "\\r").replace("\n", "\\n")
    if len(text) <= longest:
        return text
    return f"{text[: longest - 20]}…({len(text)} characters)"


def one_line(message: str) -> str:
    """A message on one line, its over-long words shortened: the last guard before anything reaches a user."""
    flat = " ".join(message.split())
    flat = _LONG_WORD.sub(lambda m: shorten(m.group(0)), flat)
    if len(flat) > 8 * LONGEST:
        flat = shorten(flat, 8 * LONGEST)
    return flat
