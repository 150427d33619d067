"""The kube-proxy document round-trips through the real kernel (nf_tables iptables) in a throwaway namespace.

Everything happens inside a `kalab-` network namespace: the host's own tables are never read or written.
"""

from __future__ import annotations

import re

import pytest

from kalab.model.iptables import parse_listing_line, parse_save, trace
from kalab.model.kubeproxy import Endpoint, ServicePort, nat_rules
from tests.support.markers import needs_root_tools
from tests.support.netns import netns, run_in
from tests.support.paths import FIXTURES

pytestmark = needs_root_tools("iptables-restore", "iptables-save", "iptables", "ip")

MASTER_2 = "192.168.7.15"
DEMO = ServicePort(
    namespace="demo",
    name="demo",
    port_name="http",
    port=80,
    cluster_ip="172.30.203.237",
    node_port=31682,
    external_ips=["172.21.6.50"],
    load_balancer_ips=["172.21.6.50"],
    endpoints=[Endpoint("10.254.0.5", 80, "master-0"), Endpoint("10.254.2.5", 80, "master-2")],
)


def saved(ns: str, *extra: str) -> str:
    return run_in(ns, "iptables-save", "-t", "nat", *extra).stdout


def comparable(dump: str) -> list[str]:
    """A dump without its dated header/footer comments and with every counter zeroed."""
    return [re.sub(r"\[\d+:\d+\]", "[0:0]", line) for line in dump.splitlines() if not line.startswith("#")]


def test_restore_is_idempotent_and_shows_the_seed_line() -> None:
    doc = nat_rules([DEMO], node_ip=MASTER_2, node_name="master-2")
    with netns(address=f"{MASTER_2}/24") as ns:
        run_in(ns, "iptables-restore", input=doc)
        first = saved(ns)
        run_in(ns, "iptables-restore", input=doc)
        second = saved(ns)
        assert comparable(first) == comparable(second)
        assert "KUBE-FW-ZFZLPEKTCJ3DBGAL" in first

        listing = run_in(ns, "iptables", "-t", "nat", "-L", "KUBE-SERVICES", "-n", "-v").stdout
        seed = parse_listing_line((FIXTURES / "seed_iptables_line.txt").read_text())
        rules = [parse_listing_line(line) for line in listing.splitlines()[2:] if line.strip()]
        assert seed.signature in [rule.signature for rule in rules]

        result = trace(parse_save(second), "172.21.6.50", 80)
        assert result.endpoint_probabilities() == pytest.approx({"10.254.0.5:80": 0.5, "10.254.2.5:80": 0.5})
        assert result.masquerade

        with_counters = parse_save(saved(ns, "-c"))
        assert all(rule.counters is not None for rule in with_counters.rules("nat"))


def test_kernel_keeps_every_rule_in_order() -> None:
    """What went in comes back: same chains, same rules in order; the kernel's rounding of 1/3 still sums to 1."""
    shop = ServicePort(
        namespace="shop",
        name="web",
        port_name="https",
        port=443,
        cluster_ip="172.30.9.9",
        load_balancer_ips=["172.21.6.51"],
        endpoints=[Endpoint(f"10.254.{n}.7", 8443) for n in range(3)],
    )
    doc = nat_rules([DEMO, shop])
    with netns(address=f"{MASTER_2}/24") as ns:
        run_in(ns, "iptables-restore", input=doc)
        back = parse_save(saved(ns))
    sent = parse_save(doc).table("nat")
    got = back.table("nat")
    assert list(got.chains) == list(sent.chains)
    for name, chain in sent.chains.items():
        expected = [(r.target, r.to_destination, r.comment, r.dport) for r in chain.rules]
        assert [(r.target, r.to_destination, r.comment, r.dport) for r in got.chains[name].rules] == expected, name
    probs = trace(back, "172.21.6.51", 443).endpoint_probabilities()
    assert sorted(probs) == ["10.254.0.7:8443", "10.254.1.7:8443", "10.254.2.7:8443"]
    assert all(p == pytest.approx(1 / 3, abs=1e-9) for p in probs.values())
    assert sum(probs.values()) == pytest.approx(1.0, abs=1e-12)
