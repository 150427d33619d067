"""The seed's data plane end to end: VIP from the bastion, through kube-proxy's rules, to both demo pods."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from kalab.lab import scenario
from kalab.lab.dataplane import netlink
from kalab.lab.dataplane.kubeproxy import nat_table
from kalab.model.iptables import parse_listing_line, parse_save, trace
from kalab.model.prometheus import parse_exposition
from tests.support.markers import needs_root_tools
from tests.support.paths import FIXTURES

pytestmark = needs_root_tools("keepalived", "iptables-restore", "ip", "curl")
PREFIX = f"kalab-t{os.getpid()}-sc-"


@pytest.fixture(scope="module")
def scn() -> Iterator[scenario.Scenario]:
    with scenario.start(scenario.ScenarioSpec(prefix=PREFIX)) as built:
        yield built
    assert netlink.list_netns() == [ns for ns in netlink.list_netns() if not ns.startswith(PREFIX)]


def test_the_vip_answers_from_the_bastion_with_the_seeds_page_from_both_pods(scn: scenario.Scenario) -> None:
    pod_ips = {pod.ip for pod in scn.demo_pods}
    seen: set[str] = set()
    for _ in range(60):  # bounded: each request picks a pod with probability 1/2
        body = scn.curl_from_bastion()
        assert body.startswith(scenario.DEMO_BODY)
        seen.add(body.removeprefix(scenario.DEMO_BODY))
        if seen == pod_ips:
            break
    assert seen == pod_ips


def test_exactly_one_node_holds_the_vip_and_its_exporter_says_master(scn: scenario.Scenario) -> None:
    holders = scn.vip_holders()
    assert len(holders) == 1
    states = {}
    for node in scn.spec.keepalived_nodes:
        frame = parse_exposition(scn.scrape(node))
        assert frame.loc[frame["metric"] == "keepalived_up", "value"].tolist() == [1.0]
        sent = frame[frame["metric"] == "keepalived_vrrp_advert_sent"]
        assert sent["name"].tolist() == ["demo/demo"] and sent["intf"].tolist() == [scn.topology.interface]
        states[node] = sent["state"].iloc[0]
    assert sorted(states.values()) == ["BACKUP", "MASTER"]
    assert [n for n, s in states.items() if s == "MASTER"] == holders


def test_master_2_lists_the_seeds_kube_fw_rule(scn: scenario.Scenario) -> None:
    listing = netlink.run_in(
        scn.topology.node_ns("master-2"), ["iptables", "-t", "nat", "-L", "KUBE-SERVICES", "-n", "-v"]
    ).stdout
    seed = parse_listing_line((FIXTURES / "seed_iptables_line.txt").read_text())
    rules = [parse_listing_line(line) for line in listing.splitlines() if "KUBE-FW-" in line]
    assert seed.signature in [rule.signature for rule in rules]


def test_the_nat_table_sends_the_vip_to_both_pods_half_and_half(scn: scenario.Scenario) -> None:
    result = trace(parse_save(nat_table(scn.topology, "master-2")), "172.21.6.50", 80)
    probabilities = result.endpoint_probabilities()
    assert probabilities == pytest.approx({f"{pod.ip}:80": 0.5 for pod in scn.demo_pods})
    assert result.masquerade


def test_the_host_namespace_has_none_of_the_labs_addresses_or_rules(scn: scenario.Scenario) -> None:
    host_addresses = Path("/proc/net/fib_trie").read_text()
    assert "172.21.6.50" not in host_addresses and "192.168.7.14" not in host_addresses
