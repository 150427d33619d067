"""VRRP router-ID (virtual_router_id) assignment for a KeepalivedGroup's instances (FACTS.md §2).

IDs must stay put once handed out: a changed ID makes every peer see a new VRRP router and re-elect, so the
previous assignment (the group's status.routerIDs) is the main input, not just a hint.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from kalab.model.errors import KalabError

MIN_ROUTER_ID = 1
MAX_ROUTER_ID = 255


def assign_router_ids(
    keys: Iterable[str], previous: Mapping[str, int] | None, blacklist: Iterable[int] = ()
) -> dict[str, int]:
    """Give each instance key a router ID in 1..255, keeping previous IDs wherever they are still allowed.

    Keys missing from `keys` lose their ID; a kept key whose ID is blacklisted, out of range or already taken
    by another kept key is treated as new. New keys, in sorted order, take the lowest free IDs. The result is
    sorted by key so equal inputs give equal (and equally ordered) outputs.
    """
    wanted = sorted(set(keys))
    banned = {int(i) for i in blacklist}
    kept = _kept(wanted, previous or {}, banned)
    fresh = [key for key in wanted if key not in kept]
    free = _free_ids(banned | set(kept.values()))
    if len(fresh) > len(free):
        allowed = sum(1 for i in range(MIN_ROUTER_ID, MAX_ROUTER_ID + 1) if i not in banned)
        raise KalabError(
            f"The group needs {len(wanted)} router IDs but only {allowed} are free "
            f"({MAX_ROUTER_ID} minus {MAX_ROUTER_ID - allowed} blacklisted); "
            "split the services across groups or shrink blacklistRouterIDs."
        )
    assigned = dict(kept)
    assigned.update(zip(fresh, free, strict=False))
    return dict(sorted(assigned.items()))


def _kept(wanted: list[str], previous: Mapping[str, int], banned: set[int]) -> dict[str, int]:
    """Previous IDs that survive: key still wanted, ID valid, not banned, and not claimed by an earlier key."""
    kept: dict[str, int] = {}
    taken: set[int] = set()
    for key in wanted:
        old = previous.get(key)
        # bool is an int in Python; a `true` in a hand-edited status is not an ID.
        if not isinstance(old, int) or isinstance(old, bool):
            continue
        if old in banned or old in taken or not MIN_ROUTER_ID <= old <= MAX_ROUTER_ID:
            continue
        kept[key] = old
        taken.add(old)
    return kept


def _free_ids(used: set[int]) -> list[int]:
    return [i for i in range(MIN_ROUTER_ID, MAX_ROUTER_ID + 1) if i not in used]
