"""Router-ID assignment: stable, lowest free, blacklist honoured, error past 255 (FACTS.md §2)."""

from __future__ import annotations

import pytest

from kalab.model.errors import KalabError
from kalab.model.routerids import assign_router_ids


def test_new_keys_get_the_lowest_free_ids_in_sorted_key_order() -> None:
    assert assign_router_ids(["demo/b", "demo/a", "apps/z"], None) == {"apps/z": 1, "demo/a": 2, "demo/b": 3}


def test_same_input_gives_same_output() -> None:
    keys = ["demo/demo", "demo/other", "shop/web"]
    first = assign_router_ids(keys, {"shop/web": 9}, [2])
    assert assign_router_ids(list(reversed(keys)), {"shop/web": 9}, [2]) == first
    # Feeding the result back (as the operator does through status.routerIDs) changes nothing.
    assert assign_router_ids(keys, first, [2]) == first


def test_adding_a_key_never_changes_the_others() -> None:
    before = assign_router_ids(["demo/b", "demo/c"], None)
    after = assign_router_ids(["demo/a", "demo/b", "demo/c"], before)
    # demo/a sorts first but arrives last: it takes the next free ID instead of shifting the others.
    assert after == {"demo/a": 3, "demo/b": 1, "demo/c": 2}


def test_keys_no_longer_present_are_dropped_and_their_id_reused() -> None:
    previous = {"demo/a": 1, "demo/b": 2, "demo/c": 3}
    assert assign_router_ids(["demo/a", "demo/c", "demo/d"], previous) == {"demo/a": 1, "demo/c": 3, "demo/d": 2}


def test_blacklisted_ids_are_never_handed_out() -> None:
    ids = assign_router_ids(["a/a", "a/b", "a/c"], None, blacklist=[1, 2, 4])
    assert ids == {"a/a": 3, "a/b": 5, "a/c": 6}


def test_an_existing_key_on_a_now_blacklisted_id_is_reassigned() -> None:
    previous = {"a/a": 1, "a/b": 2}
    assert assign_router_ids(["a/a", "a/b"], previous, blacklist=[1]) == {"a/a": 3, "a/b": 2}


def test_out_of_range_or_clashing_previous_ids_are_reassigned() -> None:
    previous = {"a/a": 0, "a/b": 300, "a/c": 7, "a/d": 7, "a/e": True}
    ids = assign_router_ids(["a/a", "a/b", "a/c", "a/d", "a/e"], previous)  # type: ignore[arg-type]
    assert ids["a/c"] == 7
    assert sorted(ids.values()) == [1, 2, 3, 4, 7]
    assert len(set(ids.values())) == len(ids)


def test_255_instances_fit_exactly() -> None:
    ids = assign_router_ids([f"ns/svc{i:03d}" for i in range(255)], None)
    assert sorted(ids.values()) == list(range(1, 256))


def test_past_255_the_group_errors_with_one_sentence() -> None:
    with pytest.raises(KalabError, match=r"needs 256 router IDs but only 255 are free") as err:
        assign_router_ids([f"ns/svc{i:03d}" for i in range(256)], None)
    assert "split the services across groups or shrink blacklistRouterIDs" in str(err.value)
    assert "\n" not in str(err.value)


def test_the_blacklist_counts_against_the_limit() -> None:
    with pytest.raises(KalabError, match=r"needs 251 router IDs but only 250 are free"):
        assign_router_ids([f"ns/svc{i:03d}" for i in range(251)], None, blacklist=[1, 2, 3, 4, 5, 999])
