"""`kalab cidr plan|sizes` run as a real process, as a user would."""

from __future__ import annotations

import json
import subprocess

from tests.support.kalabcli import one_stderr_line
from tests.support.kalabcli import run_kalab as kalab


def one_error_line(result: subprocess.CompletedProcess[str]) -> str:
    line = one_stderr_line(result)
    assert line.startswith("kalab: error: ")
    return line.removeprefix("kalab: error: ")


def test_plan_seed_cidr_prints_the_table_and_the_host_bits_warning() -> None:
    result = kalab("cidr", "plan", "172.21.6.33/27", "--allowed", "172.21.6.33/27")
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    lines = result.stdout.splitlines()
    assert lines[:4] == [
        "network  172.21.6.32/27",
        "size     32",
        "first    172.21.6.33",
        "last     172.21.6.62",
    ]
    assert len(lines) == 5
    assert lines[4].startswith("warning: 172.21.6.33/27 has host bits set: the network is 172.21.6.32/27")


def test_plan_json_has_the_documented_fields() -> None:
    result = kalab("cidr", "plan", "172.21.6.33/27", "--json")
    assert result.returncode == 0
    data = json.loads(result.stdout)
    assert (data["network"], data["size"], data["first"], data["last"]) == (
        "172.21.6.32/27",
        32,
        "172.21.6.33",
        "172.21.6.62",
    )
    assert len(data["warnings"]) == 1 and "host bits" in data["warnings"][0]
    assert data["errors"] == []


def test_clean_cidr_has_no_warning_lines() -> None:
    result = kalab("cidr", "plan", "172.21.6.32/27")
    assert result.returncode == 0
    assert "warning" not in result.stdout
    assert len(result.stdout.splitlines()) == 4


def test_not_a_cidr_fails_with_one_sentence() -> None:
    result = kalab("cidr", "plan", "banana")
    assert result.returncode == 1
    assert result.stdout == ""
    sentence = one_error_line(result)
    assert '"banana" is not a CIDR' in sentence and "172.21.6.32/27" in sentence


def test_ipv6_fails_and_json_still_reports_it() -> None:
    result = kalab("cidr", "plan", "fd00::/64", "--json")
    assert result.returncode == 1
    data = json.loads(result.stdout)
    assert data["network"] is None and len(data["errors"]) == 1
    assert "IPv6" in one_error_line(result)


def test_overlap_with_cluster_network_exits_1_but_shows_the_table() -> None:
    result = kalab("cidr", "plan", "10.254.3.0/24")
    assert result.returncode == 1
    assert result.stdout.splitlines()[0] == "network  10.254.3.0/24"
    assert "cluster network 10.254.0.0/16" in one_error_line(result)


def test_custom_networks_and_allowed_ranges() -> None:
    result = kalab(
        "cidr",
        "plan",
        "10.254.3.0/24",
        "--cluster-network",
        "10.128.0.0/14",
        "--service-network",
        "172.30.0.0/16",
        "--machine-network",
        "10.254.0.0/16",
        "--allowed",
        "192.168.0.0/16",
        "--allowed",
        "172.16.0.0/12",
    )
    assert result.returncode == 0, result.stderr
    warnings = [line for line in result.stdout.splitlines() if line.startswith("warning: ")]
    assert len(warnings) == 2
    assert "machine network 10.254.0.0/16" in warnings[0]
    assert "not inside the allowed ranges (192.168.0.0/16, 172.16.0.0/12)" in warnings[1]


def test_machine_network_none_skips_that_check() -> None:
    assert "machine network" in kalab("cidr", "plan", "192.168.7.128/25").stdout
    assert "machine network" not in kalab("cidr", "plan", "192.168.7.128/25", "--machine-network", "none").stdout


def test_invalid_allowed_argument_is_an_error() -> None:
    result = kalab("cidr", "plan", "172.21.6.32/27", "--allowed", "172.21.6.0")
    assert result.returncode == 1
    assert one_error_line(result).startswith('The allowed range "172.21.6.0" is a single address')


def test_missing_cidr_is_a_one_line_usage_error() -> None:
    result = kalab("cidr", "plan")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) == 1


def test_sizes_prints_the_seed_table() -> None:
    result = kalab("cidr", "sizes")
    assert result.returncode == 0
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    assert rows == [
        ["/24", "256", "254"],
        ["/25", "128", "126"],
        ["/26", "64", "62"],
        ["/27", "32", "30"],
        ["/28", "16", "14"],
    ]
    as_json = json.loads(kalab("cidr", "sizes", "--json").stdout)
    assert {r["prefix"]: r["addresses"] for r in as_json} == {24: 256, 25: 128, 26: 64, 27: 32, 28: 16}
