"""CIDR planning, with the seed's externalIP block and size table as fixtures."""

from __future__ import annotations

import json
from typing import Any

import pytest

from kalab.model.cidr import (
    SIZE_TABLE,
    address_count,
    cidr_problem,
    contains,
    has_host_bits,
    host_bits_warning,
    ipv4_network,
    plan_cidr,
    size_rows,
)
from kalab.model.errors import KalabError

SEED_CIDR = "172.21.6.33/27"


def test_seed_cidr_is_really_the_32_block() -> None:
    plan = plan_cidr(SEED_CIDR, allowed=[SEED_CIDR])
    assert (plan.network, plan.size, plan.first, plan.last) == ("172.21.6.32/27", 32, "172.21.6.33", "172.21.6.62")
    assert plan.ok and plan.errors == []
    assert len(plan.warnings) == 1
    warning = plan.warnings[0]
    assert warning.startswith("172.21.6.33/27 has host bits set: the network is 172.21.6.32/27 ")
    assert "172.21.6.32–172.21.6.63" in warning


def test_clean_block_in_seed_cluster_has_no_findings() -> None:
    plan = plan_cidr("172.21.6.32/27", allowed=["172.21.6.0/24"])
    assert plan.ok
    assert plan.warnings == []
    assert plan.requested == "172.21.6.32/27"


def test_seed_size_table() -> None:
    assert SIZE_TABLE == {24: 256, 25: 128, 26: 64, 27: 32, 28: 16}
    assert [(r["prefix"], r["addresses"], r["usable"]) for r in size_rows()] == [
        (24, 256, 254),
        (25, 128, 126),
        (26, 64, 62),
        (27, 32, 30),
        (28, 16, 14),
    ]
    assert [plan_cidr(f"172.21.6.0/{p}").size for p in SIZE_TABLE] == list(SIZE_TABLE.values())


@pytest.mark.parametrize("prefix", [-1, 33])
def test_address_count_rejects_impossible_prefixes(prefix: int) -> None:
    with pytest.raises(KalabError, match="0 to 32"):
        address_count(prefix)


@pytest.mark.parametrize(
    ("cidr", "first", "last", "size"),
    [
        ("172.21.6.32/30", "172.21.6.33", "172.21.6.34", 4),
        ("172.21.6.32/31", "172.21.6.32", "172.21.6.33", 2),  # point-to-point: both usable
        ("172.21.6.50/32", "172.21.6.50", "172.21.6.50", 1),
        ("172.21.6.0/24", "172.21.6.1", "172.21.6.254", 256),
    ],
)
def test_usable_range(cidr: str, first: str, last: str, size: int) -> None:
    plan = plan_cidr(cidr)
    assert (plan.first, plan.last, plan.size) == (first, last, size)


def test_overlap_with_cluster_network_is_an_error() -> None:
    plan = plan_cidr("10.254.3.0/24")
    assert not plan.ok
    assert plan.network == "10.254.3.0/24"  # still explained, so the user sees what clashed
    assert len(plan.errors) == 1
    assert "overlaps the cluster network 10.254.0.0/16" in plan.errors[0]
    assert "choose a block outside it" in plan.errors[0]


def test_supernet_of_service_network_is_an_error() -> None:
    plan = plan_cidr("172.16.0.0/12")
    assert [e for e in plan.errors if "service network 172.30.0.0/16" in e]
    assert not [e for e in plan.errors if "cluster network" in e]


def test_whole_address_space_clashes_with_both_networks_in_order() -> None:
    errors = plan_cidr("0.0.0.0/0", machine_network=None).errors
    assert len(errors) == 2
    assert "cluster network" in errors[0] and "service network" in errors[1]


def test_custom_cluster_networks_are_used() -> None:
    assert plan_cidr("10.254.3.0/24", cluster_network="10.128.0.0/14").ok
    assert not plan_cidr("10.129.0.0/24", cluster_network="10.128.0.0/14").ok


def test_overlap_with_machine_network_is_a_warning() -> None:
    plan = plan_cidr("192.168.7.128/25")
    assert plan.ok
    assert len(plan.warnings) == 1
    assert "machine network 192.168.7.0/24" in plan.warnings[0]
    assert "node" in plan.warnings[0]
    assert plan_cidr("192.168.7.128/25", machine_network=None).warnings == []


def test_auto_assign_outside_allowed_ranges_is_a_warning_that_explains_the_policy() -> None:
    plan = plan_cidr("172.21.6.32/27", allowed=["172.21.7.0/24", "10.0.0.0/24"])
    assert plan.ok
    (warning,) = plan.warnings
    assert "not inside the allowed ranges (172.21.7.0/24, 10.0.0.0/24)" in warning
    assert "not checked against the policy" in warning
    assert "rejected" in warning


@pytest.mark.parametrize(
    ("allowed", "warned"),
    [
        (["172.21.6.32/28"], True),  # only half of the block is allowed
        (["172.21.6.48/28", "172.21.6.0/24"], False),  # the second range covers it
        (["172.21.6.33/27"], False),  # host bits in the allowed range do not matter
        ([], False),  # no policy given: nothing to compare with
    ],
)
def test_allowed_containment(allowed: list[str], warned: bool) -> None:
    warnings = plan_cidr("172.21.6.32/27", allowed=allowed).warnings
    assert any("allowed ranges" in w for w in warnings) is warned


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("banana", '"banana" is not a CIDR'),
        ("fd00::/64", "IPv6"),
        ("172.21.6.50", "single address"),
        ("172.21.6.0/255.255.255.0", "netmask"),
        ("172.21.6.0/33", "0 to 32"),
        ("", "empty"),
        (" 172.21.6.0/24", "spaces"),
        ("172.21.6/24", "is not a CIDR"),
    ],
)
def test_unusable_input_gives_one_sentence_with_a_fix(text: str, needle: str) -> None:
    plan = plan_cidr(text)
    assert not plan.ok
    assert (plan.network, plan.size, plan.first, plan.last) == (None, None, None, None)
    (error,) = plan.errors
    assert needle in error
    assert error.endswith(".") and "\n" not in error
    # Every sentence names a way out: an example or a concrete action after the semicolon.
    assert ";" in error


def test_not_a_cidr_shows_an_example() -> None:
    assert "172.21.6.32/27" in plan_cidr("banana").errors[0]


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"cluster_network": "nope"}, 'The cluster network "nope" is not a CIDR'),
        ({"service_network": "fd00::/108"}, 'The service network "fd00::/108" is an IPv6 network'),
        ({"machine_network": "192.168.7.1"}, 'The machine network "192.168.7.1" is a single address'),
        ({"allowed": ["172.21.6.0/24", "x"]}, 'The allowed range "x" is not a CIDR'),
    ],
)
def test_invalid_context_networks_are_errors_naming_the_argument(kwargs: dict[str, Any], needle: str) -> None:
    plan = plan_cidr("172.21.6.32/27", **kwargs)
    assert not plan.ok
    assert [e for e in plan.errors if e.startswith(needle)]
    assert plan.network == "172.21.6.32/27"


def test_bad_cidr_and_bad_context_are_all_reported() -> None:
    errors = plan_cidr("banana", cluster_network="x").errors
    assert len(errors) == 2
    assert errors[0].startswith('"banana"') and errors[1].startswith("The cluster network")


def test_to_dict_is_json_ready_and_has_the_documented_keys() -> None:
    data = json.loads(json.dumps(plan_cidr(SEED_CIDR).to_dict()))
    assert {"network", "size", "first", "last", "warnings", "errors"} <= set(data)
    assert data["network"] == "172.21.6.32/27" and data["size"] == 32 and data["ok"] is True
    assert json.loads(json.dumps(plan_cidr("banana").to_dict()))["ok"] is False


def test_helpers() -> None:
    assert has_host_bits(SEED_CIDR) and not has_host_bits("172.21.6.32/27")
    assert host_bits_warning("172.21.6.32/27") is None
    assert host_bits_warning("banana") is None
    assert contains("172.21.6.0/24", SEED_CIDR)
    assert not contains("172.21.6.32/28", "172.21.6.32/27")
    assert str(ipv4_network(SEED_CIDR)) == "172.21.6.32/27"
    assert cidr_problem("172.21.6.32/27") is None
    with pytest.raises(KalabError, match="IPv6"):
        ipv4_network("fd00::/64")
