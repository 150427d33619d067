"""Traffic analysis against a real lab at the seed's end state: who answers the VIP, the node's nat path, the pod."""

from __future__ import annotations

import pandas as pd
import pytest

from kalab.cluster import demo, exporter, keepalived, traffic
from kalab.cluster.sites import Site, site_for
from kalab.model import kubeproxy
from kalab.model.errors import KalabError
from kalab.model.pod_anatomy import pod_anatomy
from tests.cluster.seeded import SeededLab, seeded_lab
from tests.support.kalabcli import one_sentence
from tests.support.labs import SharedLab
from tests.support.markers import needs_lab_tools
from tests.support.paths import SEED
from tests.support.waiting import wait_for

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
UNASSIGNED_VIP = "172.21.6.60"  # inside the auto-assign block, on no service: nothing answers it
FW_CHAIN = kubeproxy.fw_chain(kubeproxy.service_port_name("demo", "demo", "http"))
SVC_CHAIN = kubeproxy.svc_chain(kubeproxy.service_port_name("demo", "demo", "http"))


@pytest.fixture(scope="module")
def seeded(shared_lab: SharedLab) -> SeededLab:
    return seeded_lab(shared_lab)


@pytest.fixture(scope="module")
def lab(seeded: SeededLab) -> SeededLab:
    """The seeded lab once its VIP answers from the bastion (keepalived elects a MASTER a few seconds in)."""
    site = site_for(seeded.cluster)

    def answers() -> bool:
        frame = site.probe(f"http://{seeded.vip}/", duration=0.2, rate=20.0, timeout=0.5)
        return bool(frame["ok"].all())

    wait_for(answers, 30, f"http://{seeded.vip}/ to answer from the bastion", 0.2)
    return seeded


@pytest.fixture(scope="module")
def site(lab: SeededLab) -> Site:
    return site_for(lab.cluster)


@pytest.fixture(scope="module")
def holder(lab: SeededLab) -> str:
    return exporter.wait_for_master(lab.cluster)


def pod_ips(lab: SeededLab) -> dict[str, str]:
    pods = demo.demo_pods(lab.cluster)
    return dict(zip(pods["pod"], pods["pod_ip"], strict=True))


# ---------------------------------------------------------------------------------------------- spread


def test_requests_spread_over_both_demo_pods(lab: SeededLab, site: Site) -> None:
    result = traffic.spread(lab.cluster, site, lab.vip, duration=1.0, rate=100.0)
    assert result.url == f"http://{lab.vip}/" and result.where == site.where and "bastion" in result.where
    assert (result.requests, result.failed, result.errors()) == (100, 0, {})
    per_pod = result.per_pod
    assert per_pod.columns.tolist() == traffic.SPREAD_COLUMNS
    assert per_pod["pod"].tolist() == ["test-0", "test-1"]
    assert per_pod["node"].tolist() == ["master-0", "master-2"]
    assert dict(zip(per_pod["pod"], per_pod["pod_ip"], strict=True)) == pod_ips(lab)
    assert (per_pod["requests"] > 0).all() and per_pod["requests"].sum() == 100
    assert per_pod["share"].sum() == pytest.approx(1.0)
    low, high = result.even_band()
    assert low < 0.5 < high and per_pod["share"].between(low, high).all()
    # Every answer names its pod; the plot's frame labels answers by pod name.
    names = {ip: name for name, ip in pod_ips(lab).items()}
    assert (result.timeline["pod"] == result.timeline["backend"].map(names)).all()
    assert set(result.by_pod()["backend"]) == {"test-0", "test-1"}


def test_spread_of_an_unanswered_vip_is_one_sentence(lab: SeededLab, site: Site) -> None:
    with pytest.raises(KalabError, match=f"None of the 10 requests to http://{UNASSIGNED_VIP}/") as nothing:
        traffic.spread(lab.cluster, site, UNASSIGNED_VIP, duration=0.2, rate=50.0, timeout=0.3)
    assert "bastion" in one_sentence(nothing)
    with pytest.raises(KalabError, match="'not-a-vip' is not an IPv4 address") as bad:
        traffic.spread(lab.cluster, site, "not-a-vip")
    one_sentence(bad)
    with pytest.raises(KalabError, match="No demo pod is Running in nowhere") as no_demo:
        traffic.spread(lab.cluster, site, lab.vip, namespace="nowhere")
    one_sentence(no_demo)


class _BrokenSite:
    where = "a site whose prober forgot columns"

    def probe(self, url: str, duration: float, rate: float, timeout: float = 1.0) -> pd.DataFrame:
        return pd.DataFrame({"seq": [0], "t": [0.0]})


def test_a_probe_frame_without_the_prober_columns_is_refused(lab: SeededLab) -> None:
    with pytest.raises(KalabError, match="lacks the column") as missing:
        traffic.spread(lab.cluster, _BrokenSite(), lab.vip, duration=0.1, rate=10.0)
    one_sentence(missing)


def test_spread_table_counts_answers_and_strangers_apart_from_failures() -> None:
    timeline = pd.DataFrame(
        {
            "t": [0.0, 0.1, 0.2, 0.3, 0.4],
            "ok": [True, True, True, False, True],
            "error": ["", "", "", "timeout", ""],
            "backend": ["10.254.0.3", "10.254.0.3", "10.254.9.9", None, "10.254.0.3"],
        }
    )
    pods = pd.DataFrame(
        {"pod": ["test-0", "test-1"], "node": ["master-0", "master-2"], "pod_ip": ["10.254.0.3", "10.254.2.2"]}
    )
    table = traffic.spread_table(timeline, pods)
    assert table.iloc[:2].to_dict("records") == [
        {"pod": "test-0", "node": "master-0", "pod_ip": "10.254.0.3", "requests": 3, "share": 0.75},
        {"pod": "test-1", "node": "master-2", "pod_ip": "10.254.2.2", "requests": 0, "share": 0.0},
    ]
    # An answer from an address that is no demo pod: its own row, pod and node empty, last.
    stranger = table.iloc[2]
    assert pd.isna(stranger["pod"]) and pd.isna(stranger["node"])
    assert (stranger["pod_ip"], stranger["requests"], stranger["share"]) == ("10.254.9.9", 1, 0.25)
    # 200 answers between two pods: a fair coin per connection stays within 4 sigma of 50 %.
    assert traffic.even_band(200, 2) == pytest.approx((0.5 - 4 * 0.5 / 200**0.5, 0.5 + 4 * 0.5 / 200**0.5))
    assert traffic.even_band(0, 2) == (0.0, 1.0)


# ---------------------------------------------------------------------------------------------- the node's nat path


def test_the_vip_holder_is_the_exporters_master(lab: SeededLab, holder: str) -> None:
    states = exporter.vrrp_states(lab.cluster)
    masters = states[(states["instance"] == "demo/demo") & (states["state"] == "MASTER")]["node"].tolist()
    assert masters == [holder] and holder in ("master-1", "master-2")
    with pytest.raises(KalabError, match=r"No single keepalived MASTER for demo/nope after 0\.5 s") as none:
        exporter.wait_for_master(lab.cluster, "demo/nope", timeout=0.5)
    one_sentence(none)


def test_the_vip_path_ends_at_the_demo_pods(lab: SeededLab, holder: str) -> None:
    endpoints = sorted(f"{ip}:80" for ip in pod_ips(lab).values())
    paths = traffic.vip_paths(lab.cluster, holder, lab.vip)
    assert paths.columns.tolist() == traffic.PATH_COLUMNS
    assert sorted(paths["endpoint"]) == endpoints
    assert paths["probability"].sum() == pytest.approx(1.0)
    assert dict(zip(paths["endpoint"], paths["pod"], strict=True)) == {f"{ip}:80": p for p, ip in pod_ips(lab).items()}
    # The external-IP rule matches first, so the packet never passes the seed's KUBE-FW chain.
    assert (paths["matched_by"] == "demo/demo:http external IP").all()
    assert paths["path"].str.startswith(f"PREROUTING → KUBE-SERVICES → {SVC_CHAIN} → KUBE-SEP-").all()
    assert not paths["path"].str.contains(FW_CHAIN).any() and paths["masquerade"].all()

    from_fw = traffic.vip_paths(lab.cluster, holder, lab.vip, start=FW_CHAIN)
    assert sorted(from_fw["endpoint"]) == endpoints and from_fw["probability"].sum() == pytest.approx(1.0)
    assert from_fw["path"].str.startswith(f"{FW_CHAIN} → {SVC_CHAIN} → KUBE-SEP-").all()
    assert (from_fw["matched_by"] == "demo/demo:http loadbalancer IP").all()


def test_vip_path_errors_are_one_sentence(lab: SeededLab, holder: str) -> None:
    with pytest.raises(KalabError, match=f"Nothing in {holder}'s nat table DNATs {UNASSIGNED_VIP}:80") as wrong:
        traffic.vip_paths(lab.cluster, holder, UNASSIGNED_VIP)
    one_sentence(wrong)
    with pytest.raises(KalabError, match="Unknown node master-9") as unknown:
        traffic.vip_paths(lab.cluster, "master-9", lab.vip)
    one_sentence(unknown)
    with pytest.raises(KalabError, match="no chain KUBE-FW-NOPE") as no_chain:
        traffic.vip_paths(lab.cluster, holder, lab.vip, start="KUBE-FW-NOPE")
    one_sentence(no_chain)


def test_the_seeds_kube_fw_line_counts_nothing(lab: SeededLab, site: Site, holder: str) -> None:
    sent = site.probe(f"http://{lab.vip}/", duration=0.5, rate=40.0)
    assert sent["ok"].all()
    rules = traffic.vip_rules(lab.cluster, holder, lab.vip)
    assert rules.columns.tolist() == traffic.RULE_COLUMNS
    assert rules["rule"].is_monotonic_increasing
    (fw,) = rules[rules["target"] == FW_CHAIN].to_dict("records")
    assert fw["comment"] == "demo/demo:http loadbalancer IP" and (fw["packets"], fw["bytes"]) == (0, 0)
    assert FW_CHAIN in fw["line"] and lab.vip in fw["line"] and "dpt:80" in fw["line"]
    # The external-IP rule from outside (physdev, src-type) comes first and counted every new connection.
    outside = rules[(rules["target"] == SVC_CHAIN) & rules["line"].str.contains("physdev-is-in")]
    assert len(outside) == 1 and outside["rule"].iloc[0] < fw["rule"]
    assert outside["packets"].iloc[0] >= len(sent)
    assert (rules["comment"].iloc[:-1] == "demo/demo:http external IP").all()


def test_vip_rule_errors_are_one_sentence(lab: SeededLab, holder: str) -> None:
    with pytest.raises(KalabError, match=f"KUBE-SERVICES on {holder} has no rule for {UNASSIGNED_VIP}:80") as wrong:
        traffic.vip_rules(lab.cluster, holder, UNASSIGNED_VIP)
    one_sentence(wrong)
    with pytest.raises(KalabError, match="Unknown node master-9") as unknown:
        traffic.vip_rules(lab.cluster, "master-9", lab.vip)
    one_sentence(unknown)
    with pytest.raises(KalabError, match="No running hostNetwork pod on master-0") as no_pod:
        traffic.vip_rules(lab.cluster, "master-0", lab.vip)
    one_sentence(no_pod)


def test_listing_rows_read_the_seeds_line() -> None:
    seed_line = next(line for line in SEED.read_text(encoding="utf-8").splitlines() if FW_CHAIN in line)
    listing = "\n".join(
        [
            "Chain KUBE-SERVICES (2 references)",
            " pkts bytes target     prot opt in     out     source               destination",
            "    5   300 KUBE-MARK-MASQ  tcp  --  *      *      !10.254.0.0/16        172.30.203.237       "
            "/* demo/demo:http cluster IP */ tcp dpt:80",
            seed_line,
        ]
    )
    rows = traffic.listing_rows(listing, "172.21.6.50", 80)
    assert rows.to_dict("records") == [
        {
            "rule": 2,
            "packets": 0,
            "bytes": 0,
            "target": FW_CHAIN,
            "comment": "demo/demo:http loadbalancer IP",
            "line": seed_line.rstrip(),
        }
    ]
    assert traffic.listing_rows(listing, "172.21.6.50", 443).empty


# ---------------------------------------------------------------------------------------------- the keepalived pod


def test_the_keepalived_pod_on_the_vips_node(lab: SeededLab, holder: str) -> None:
    pod = traffic.keepalived_pod(lab.cluster, node=holder)
    running = keepalived.keepalived_pods(lab.cluster)
    assert pod["metadata"]["name"] in set(running[running["node"] == holder]["pod"])
    assert pod["spec"]["nodeName"] == holder and pod["spec"]["hostNetwork"] is True
    anatomy = pod_anatomy(pod)
    containers = set(anatomy["container"]) - {""}
    assert containers == {"config-setup", "keepalived", "config-reloader", "prometheus-exporter"}
    traits = set(zip(anatomy["aspect"], anatomy["container"], strict=True))
    assert {("hostNetwork", ""), ("privileged", "keepalived"), ("initContainer", "config-setup")} <= traits
    assert traffic.keepalived_pod(lab.cluster)["metadata"]["name"] in set(running["pod"])
    with pytest.raises(
        KalabError, match="No keepalived pod of keepalived-operator/keepalivedgroup-workers is Running on master-0"
    ) as none:
        traffic.keepalived_pod(lab.cluster, node="master-0")
    one_sentence(none)
