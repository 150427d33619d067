"""Status helpers shared by the OLM reconcilers: conditions that keep their transition time, and a comparison that
ignores timestamps so that a status write does not trigger another one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from kalab.lab.apiserver.store import Obj, now_rfc3339


def condition(type_: str, status: str, reason: str, message: str, old: Iterable[Mapping[str, Any]] = ()) -> Obj:
    """A condition; its lastTransitionTime survives when the same type already had this status."""
    previous = next((c for c in old if c.get("type") == type_), None)
    since = previous.get("lastTransitionTime") if previous and previous.get("status") == status else None
    return {
        "type": type_,
        "status": status,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now_rfc3339(),
    }


def same(old: Mapping[str, Any] | None, new: Mapping[str, Any], ignore: tuple[str, ...] = ("lastUpdated",)) -> bool:
    def strip(status: Mapping[str, Any] | None) -> dict[str, Any]:
        return {k: v for k, v in (status or {}).items() if k not in ignore}

    return strip(old) == strip(new)
