"""kube-proxy naming and the nat document it programs, pinned to the seed's demo service on master-2."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest

from kalab.model.errors import KalabError
from kalab.model.kubeproxy import (
    NODEPORTS_COMMENT,
    Endpoint,
    chain_suffix,
    ext_chain,
    fw_chain,
    nat_rules,
    probability,
    sep_chain,
    service_port_name,
    svc_chain,
    xlb_chain,
)
from tests.support.seedobjects import demo_service_port as demo

SEED_SUFFIX = "ZFZLPEKTCJ3DBGAL"
SEED_LB_RULE = (
    '-A KUBE-SERVICES -d 172.21.6.50/32 -p tcp -m comment --comment "demo/demo:http loadbalancer IP" '
    "-m tcp --dport 80 -j KUBE-FW-ZFZLPEKTCJ3DBGAL"
)


def rules_of(doc: str, chain: str) -> list[str]:
    return [line for line in doc.splitlines() if line.startswith(f"-A {chain} ")]


# ---------------------------------------------------------------------------------------------- naming


def test_service_port_name() -> None:
    assert service_port_name("demo", "demo", "http") == "demo/demo:http"
    assert service_port_name("demo", "demo") == "demo/demo"


def test_seed_chain_suffix_and_names() -> None:
    assert chain_suffix("demo/demo:http", "tcp") == SEED_SUFFIX
    assert chain_suffix("demo/demo:http", "TCP") == SEED_SUFFIX
    assert fw_chain("demo/demo:http") == "KUBE-FW-ZFZLPEKTCJ3DBGAL"
    assert svc_chain("demo/demo:http") == "KUBE-SVC-ZFZLPEKTCJ3DBGAL"
    assert xlb_chain("demo/demo:http") == "KUBE-XLB-ZFZLPEKTCJ3DBGAL"
    assert ext_chain("demo/demo:http") == "KUBE-EXT-ZFZLPEKTCJ3DBGAL"
    assert chain_suffix("demo/demo:http", "udp") != SEED_SUFFIX


def test_sep_chain_hashes_name_protocol_and_endpoint() -> None:
    digest = hashlib.sha256(b"demo/demo:httptcp10.254.0.5:80").digest()
    expected = "KUBE-SEP-" + base64.b32encode(digest).decode()[:16]
    assert sep_chain("demo/demo:http", "tcp", "10.254.0.5:80") == expected == "KUBE-SEP-WIGNKRUKQESAWXA7"
    assert sep_chain("demo/demo:http", "tcp", "10.254.2.5:80") != expected
    assert demo().sep_chain("10.254.0.5", 80) == expected


def test_chain_names_fit_iptables_limit() -> None:
    for name in (fw_chain("a/b:c"), sep_chain("a/b:c", "tcp", "10.0.0.1:1"), xlb_chain("a/b:c")):
        assert len(name) <= 28


# ---------------------------------------------------------------------------------------------- document


def test_document_is_a_whole_nat_table() -> None:
    doc = nat_rules([demo()])
    lines = doc.splitlines()
    assert lines[0] == "*nat"
    assert lines[-1] == "COMMIT"
    assert doc.endswith("COMMIT\n")
    for builtin in ("PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"):
        assert f":{builtin} ACCEPT [0:0]" in lines
    declared = [line.split()[0][1:] for line in lines if line.startswith(":")]
    assert all(name.startswith("KUBE-") for name in declared[4:])
    for chain in ("KUBE-SERVICES", "KUBE-NODEPORTS", "KUBE-POSTROUTING", "KUBE-MARK-MASQ", "KUBE-MARK-DROP"):
        assert f":{chain} - [0:0]" in lines
    assert '-A PREROUTING -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in lines
    assert '-A OUTPUT -m comment --comment "kubernetes service portals" -j KUBE-SERVICES' in lines
    assert '-A POSTROUTING -m comment --comment "kubernetes postrouting rules" -j KUBE-POSTROUTING' in lines


def test_every_jump_lands_on_a_declared_chain_or_a_known_target() -> None:
    doc = nat_rules([demo()])
    declared = {line.split()[0][1:] for line in doc.splitlines() if line.startswith(":")}
    targets = set(re.findall(r"-j (\S+)", doc))
    assert targets - declared == {"MARK", "RETURN", "MASQUERADE", "DNAT"}
    # No declared KUBE chain is left dangling except the catch-all ones kube-proxy always has.
    used = targets | {"KUBE-POSTROUTING", "PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}
    assert declared <= used


def test_masquerade_plumbing() -> None:
    doc = nat_rules([demo()])
    assert rules_of(doc, "KUBE-MARK-MASQ") == ["-A KUBE-MARK-MASQ -j MARK --or-mark 0x4000"]
    assert rules_of(doc, "KUBE-POSTROUTING") == [
        "-A KUBE-POSTROUTING -m mark ! --mark 0x4000/0x4000 -j RETURN",
        "-A KUBE-POSTROUTING -j MARK --xor-mark 0x4000",
        '-A KUBE-POSTROUTING -m comment --comment "kubernetes service traffic requiring SNAT" '
        "-j MASQUERADE --random-fully",
    ]


def test_kube_services_for_the_seed_demo() -> None:
    doc = nat_rules([demo()])
    services = rules_of(doc, "KUBE-SERVICES")
    cluster = '-d 172.30.203.237/32 -p tcp -m comment --comment "demo/demo:http cluster IP" -m tcp --dport 80'
    external = '-d 172.21.6.50/32 -p tcp -m comment --comment "demo/demo:http external IP" -m tcp --dport 80'
    assert services == [
        f"-A KUBE-SERVICES ! -s 10.254.0.0/16 {cluster} -j KUBE-MARK-MASQ",
        f"-A KUBE-SERVICES {cluster} -j KUBE-SVC-{SEED_SUFFIX}",
        f"-A KUBE-SERVICES {external} -j KUBE-MARK-MASQ",
        f"-A KUBE-SERVICES {external} -m physdev ! --physdev-is-in -m addrtype ! --src-type LOCAL "
        f"-j KUBE-SVC-{SEED_SUFFIX}",
        f"-A KUBE-SERVICES {external} -m addrtype --dst-type LOCAL -j KUBE-SVC-{SEED_SUFFIX}",
        SEED_LB_RULE,
        f'-A KUBE-SERVICES -m comment --comment "{NODEPORTS_COMMENT}" -m addrtype --dst-type LOCAL -j KUBE-NODEPORTS',
    ]


def test_firewall_nodeport_and_endpoint_chains() -> None:
    doc = nat_rules([demo()])
    lb = '-m comment --comment "demo/demo:http loadbalancer IP"'
    assert rules_of(doc, f"KUBE-FW-{SEED_SUFFIX}") == [
        f"-A KUBE-FW-{SEED_SUFFIX} {lb} -j KUBE-MARK-MASQ",
        f"-A KUBE-FW-{SEED_SUFFIX} {lb} -j KUBE-SVC-{SEED_SUFFIX}",
        f"-A KUBE-FW-{SEED_SUFFIX} {lb} -j KUBE-MARK-DROP",
    ]
    nodeport = '-A KUBE-NODEPORTS -p tcp -m comment --comment "demo/demo:http" -m tcp --dport 31682'
    assert rules_of(doc, "KUBE-NODEPORTS") == [f"{nodeport} -j KUBE-MARK-MASQ", f"{nodeport} -j KUBE-SVC-{SEED_SUFFIX}"]
    sep0 = "KUBE-SEP-WIGNKRUKQESAWXA7"
    sep2 = sep_chain("demo/demo:http", "tcp", "10.254.2.5:80")
    assert rules_of(doc, f"KUBE-SVC-{SEED_SUFFIX}") == [
        f'-A KUBE-SVC-{SEED_SUFFIX} -m comment --comment "demo/demo:http" '
        f"-m statistic --mode random --probability 0.50000000000 -j {sep0}",
        f'-A KUBE-SVC-{SEED_SUFFIX} -m comment --comment "demo/demo:http" -j {sep2}',
    ]
    assert rules_of(doc, sep0) == [
        f'-A {sep0} -s 10.254.0.5/32 -m comment --comment "demo/demo:http" -j KUBE-MARK-MASQ',
        f'-A {sep0} -p tcp -m comment --comment "demo/demo:http" -m tcp -j DNAT --to-destination 10.254.0.5:80',
    ]


def test_nodeports_rule_is_last_and_can_pin_the_node_ip() -> None:
    doc = nat_rules([demo()], node_ip="192.168.7.15")
    assert rules_of(doc, "KUBE-SERVICES")[-1] == (
        f'-A KUBE-SERVICES -d 192.168.7.15/32 -m comment --comment "{NODEPORTS_COMMENT}" -j KUBE-NODEPORTS'
    )


def test_probabilities_follow_one_over_remaining() -> None:
    assert [probability(i, 4) for i in range(3)] == ["0.25000000000", "0.33333333333", "0.50000000000"]
    eps = [Endpoint(f"10.254.{n}.5", 80) for n in range(3)]
    doc = nat_rules([demo(endpoints=eps)])
    svc = rules_of(doc, f"KUBE-SVC-{SEED_SUFFIX}")
    assert [re.findall(r"--probability (\S+)", rule) for rule in svc] == [["0.33333333333"], ["0.50000000000"], []]


def test_same_services_same_text_in_any_order() -> None:
    other = demo(name="web", port_name="", node_port=None, external_ips=[], load_balancer_ips=[])
    first = nat_rules([demo(), other])
    again = nat_rules([other, demo(endpoints=list(reversed(demo().endpoints)))])
    assert first == again == nat_rules([demo(), other])
    assert "KUBE-SVC-" + chain_suffix("demo/web", "tcp") in first


def test_duplicate_vips_render_once() -> None:
    doc = nat_rules([demo(load_balancer_ips=["172.21.6.50", "172.21.6.50"])])
    assert doc.count(SEED_LB_RULE) == 1


def test_service_without_endpoints_gets_no_rules() -> None:
    doc = nat_rules([demo(endpoints=[])])
    assert "demo/demo:http" not in doc
    assert SEED_SUFFIX not in doc


def test_lb_only_service_and_endpoint_port_defaults_to_target_port() -> None:
    sp = demo(external_ips=[], target_port=8080, endpoints=[Endpoint("10.254.2.5")])
    doc = nat_rules([sp])
    assert SEED_LB_RULE in doc
    assert "external IP" not in doc
    assert "--to-destination 10.254.2.5:8080" in doc


def test_udp_service() -> None:
    doc = nat_rules([demo(protocol="UDP", port_name="dns", port=53, node_port=None)])
    assert '-p udp -m comment --comment "demo/demo:dns cluster IP" -m udp --dport 53' in doc
    assert "-m udp -j DNAT --to-destination 10.254.0.5:80" in doc
    assert "KUBE-SVC-" + chain_suffix("demo/demo:dns", "udp") in doc


def test_local_policy_only_balances_local_endpoints() -> None:
    sp = demo(external_traffic_policy="Local")
    with pytest.raises(KalabError, match="node_name"):
        nat_rules([sp])
    doc = nat_rules([sp], node_name="master-2")
    xlb = f"KUBE-XLB-{SEED_SUFFIX}"
    fw = rules_of(doc, f"KUBE-FW-{SEED_SUFFIX}")
    assert [rule.split("-j ")[1] for rule in fw] == [xlb, "KUBE-MARK-DROP"]
    balancing = [rule for rule in rules_of(doc, xlb) if "Balancing rule" in rule]
    assert balancing == [
        f'-A {xlb} -m comment --comment "Balancing rule 0 for demo/demo:http" '
        f"-j {sep_chain('demo/demo:http', 'tcp', '10.254.2.5:80')}"
    ]
    # The cluster IP still reaches both endpoints.
    assert len(rules_of(doc, f"KUBE-SVC-{SEED_SUFFIX}")) == 2
    assert "-s 127.0.0.0/8" in "\n".join(rules_of(doc, "KUBE-NODEPORTS"))


def test_local_policy_without_local_endpoints_marks_drop() -> None:
    doc = nat_rules([demo(external_traffic_policy="Local")], node_name="master-1")
    xlb = rules_of(doc, f"KUBE-XLB-{SEED_SUFFIX}")
    assert xlb[-1] == (
        f'-A KUBE-XLB-{SEED_SUFFIX} -m comment --comment "demo/demo:http has no local endpoints" -j KUBE-MARK-DROP'
    )


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"protocol": "ICMP"}, "protocol"),
        ({"cluster_ip": "not-an-ip"}, "IPv4"),
        ({"external_ips": ["fd00::1"]}, "IPv4"),
        ({"external_traffic_policy": "Nearest"}, "externalTrafficPolicy"),
        ({"port": 0}, "port number"),
        ({"endpoints": [Endpoint("10.254.0.999", 80)]}, "IPv4"),
        ({"external_ips": "172.21.6.50"}, "one string"),
    ],
)
def test_bad_service_ports_are_one_sentence_errors(changes: dict[str, object], words: str) -> None:
    with pytest.raises(KalabError, match=words) as err:
        demo(**changes)
    assert str(err.value).count(". ") == 0


def test_bad_arguments_to_nat_rules() -> None:
    with pytest.raises(KalabError, match="listed twice"):
        nat_rules([demo(), demo()])
    with pytest.raises(KalabError, match="CIDR"):
        nat_rules([demo()], cluster_cidr="10.254.0.0/99")
    with pytest.raises(KalabError, match="node IP"):
        nat_rules([demo()], node_ip="master-2")
