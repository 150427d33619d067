"""Notebook 05's verbs on a real lab: client sites, probes, failover (lab and API), VRRP tuning, the exporter."""

from __future__ import annotations

import gc
import json
import tempfile
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import yaml

from kalab.cluster import demo, exporter, failover, keepalived, tuning
from kalab.cluster.apitarget import ApiTarget
from kalab.cluster.connect import connect
from kalab.cluster.sites import site_for
from kalab.lab.dataplane import naming
from kalab.lab.running import RunningLab
from kalab.model.clientsite import CLIENT_SITE_EXTENSION, THIS_MACHINE
from kalab.model.errors import KalabError
from kalab.model.operator import VERBATIM_ANNOTATION
from kalab.model.prometheus import advert_rates
from kalab.model.vrrp import FailureKind
from kalab.ui.live import ExporterChart
from tests.cluster.seeded import SeededLab, seeded_lab
from tests.support.kalabcli import one_sentence, one_stderr_line, run_kalab
from tests.support.labs import SharedLab
from tests.support.markers import needs_lab_tools

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")


@pytest.fixture(scope="module")
def seeded(shared_lab: SharedLab) -> SeededLab:
    return seeded_lab(shared_lab)


def kubeconfig_with(seeded: SeededLab, tmp_path: Path, extension: dict[str, str] | None) -> Path:
    config = yaml.safe_load(seeded.info.kubeconfig.read_text())
    cluster = config["clusters"][0]["cluster"]
    cluster.pop("extensions")
    if extension is not None:
        cluster["extensions"] = [{"name": CLIENT_SITE_EXTENSION, "extension": extension}]
    path = tmp_path / "kubeconfig"
    path.write_text(yaml.safe_dump(config))
    return path


def test_the_labs_kubeconfig_sends_probes_from_the_bastion(seeded: SeededLab) -> None:
    site = site_for(seeded.cluster)
    bastion = naming.bastion_ns(naming.DEFAULT_PREFIX)
    assert "bastion" in site.where and bastion in site.where and site.clients.where == site.where
    # Entered through the lab's own tree (its top process), then its bastion namespace: never the host's network.
    assert "nsenter" in site.clients.prefix and f"--target={seeded.info.pid}" in site.clients.prefix
    assert site.clients.prefix == tuple(seeded.info.entry().command(bastion, []))
    assert list(site.clients.prefix[-4:]) == ["ip", "netns", "exec", bastion]
    frame = site.probe(f"http://{seeded.vip}/", duration=1.0, rate=50.0)
    assert len(frame) == 50 and frame["ok"].all()
    assert set(frame["backend"]) == set(demo.demo_pods(seeded.cluster)["pod_ip"])
    assert isinstance(site.failover_target(), RunningLab)


def test_a_kubeconfig_without_a_site_means_this_machine_and_graceful_only(seeded: SeededLab, tmp_path: Path) -> None:
    plain = connect(str(kubeconfig_with(seeded, tmp_path, None)))
    site = site_for(plain)
    assert site.clients == THIS_MACHINE and site.clients.prefix == () and site.where.startswith("this machine")
    target = site.failover_target()  # probing from here would leave the lab's namespaces: not done here
    assert isinstance(target, ApiTarget) and target.vip == seeded.vip
    assert target.failure_kinds == (FailureKind.GRACEFUL,) and target.clients == THIS_MACHINE
    with pytest.raises(KalabError, match="needs access to the nodes") as crash:
        failover.run_experiment(target, "crash")
    one_sentence(crash)
    with pytest.raises(KalabError, match="no EXTERNAL-IP carried by keepalived"):
        ApiTarget(plain, "default", "kubernetes")


def test_an_unknown_site_plugin_is_one_sentence(seeded: SeededLab, tmp_path: Path) -> None:
    odd = connect(str(kubeconfig_with(seeded, tmp_path, {"plugin": "elsewhere"})))
    with pytest.raises(KalabError, match='client site "elsewhere", which no installed package provides'):
        site_for(odd)


def test_graceful_failover_through_the_api_alone(seeded: SeededLab) -> None:
    """The real-cluster path (delete the MASTER's pod, watch the exporters), with clients in the lab's bastion."""
    target = ApiTarget(seeded.cluster, clients=site_for(seeded.cluster).clients)
    before = keepalived.keepalived_pods(seeded.cluster)
    experiment = failover.run_experiment(target, "graceful", trials=1, rate=100.0)
    (result,) = experiment.results
    assert result.new_master is not None and result.new_master != result.old_master
    # Skew_Time at priority 100 and 1 s adverts is 609 ms; one scrape round can add a little.
    assert result.takeover_ms is not None and 0 < result.takeover_ms < result.expected_takeover_ms + 1500
    assert result.requests >= 100 and result.outage_ms < 1000  # kube-proxy serves the VIP on every node
    after = keepalived.keepalived_pods(seeded.cluster)
    assert after["ready"].all() and sorted(after["node"]) == sorted(before["node"])
    replaced = set(before["pod"]) - set(after["pod"])
    assert len(replaced) == 1  # the old MASTER's pod was deleted and the DaemonSet made a new one
    assert target.wait_for_single_master() in set(after["node"])


def test_the_lab_site_breaks_what_the_api_cannot(seeded: SeededLab) -> None:
    target = site_for(seeded.cluster).failover_target()
    assert set(target.failure_kinds) == set(FailureKind)
    experiment = failover.run_experiment(target, "crash", trials=1)
    (result,) = experiment.results
    assert result.new_master not in (None, result.old_master)
    # Nobody said goodbye: the backup waits out Master_Down_Interval (3 adverts plus Skew_Time).
    assert result.takeover_ms is not None
    assert 0.8 * result.expected_min_takeover_ms <= result.takeover_ms <= result.expected_takeover_ms + 1000
    # The lab's kubelet restarts the container at once (as a kubelet's first restart does), and the new keepalived
    # drops the stale copy it finds; the verdict says which of the two ways this trial went.
    assert ("two nodes held the VIP" in result.verdict) == (result.duplicate_vip_ms >= 1.0)


def test_tuning_reaches_keepalived_and_restores_exactly(seeded: SeededLab) -> None:
    cluster = seeded.cluster
    original = tuning.vrrp_tuning(cluster)
    steps: list[str] = []
    with pytest.raises(KalabError, match="needs VRRP version 3") as v2:
        tuning.tune_vrrp(cluster, 0.5)  # sub-second adverts on v2: refused before anything is written
    one_sentence(v2)
    assert tuning.vrrp_tuning(cluster) == original
    try:
        assert tuning.tune_vrrp(cluster, 0.2, 3, progress=steps.append) == {"advert_int": "0.2", "version": "3"}
        assert tuning.tune_vrrp(cluster, 0.2, 3, progress=steps.append) == {"advert_int": "0.2", "version": "3"}
        assert steps == [
            "annotated Service demo/demo: advert_int 0.2, version 3",
            "Service demo/demo already runs its VRRP instance with advert_int 0.2, version 3",
        ]
        rates = tuning.wait_for_advert_interval(cluster, 0.2)
        master = rates[rates["state"] == "MASTER"]
        assert len(master) == 1 and abs(float(master["adverts_per_s"].iloc[0]) - 5.0) <= 1.25  # 1 / 0.2 s
        backup = rates[rates["state"] == "BACKUP"]  # hears the new adverts: it runs the new config too
        assert len(backup) == 1 and abs(float(backup["received_per_s"].iloc[0]) - 5.0) <= 1.25
        target = site_for(cluster).failover_target()
        assert (target.advert_int, target.vrrp_version) == (0.2, 3)
        with pytest.raises(KalabError, match=r"one MASTER advertising every 0\.05 s, heard by every BACKUP") as slow:
            tuning.wait_for_advert_interval(cluster, 0.05, timeout=1.0, window=0.5)
        one_sentence(slow)
    finally:
        assert tuning.restore_vrrp(cluster, original, progress=steps.append)
    assert not tuning.restore_vrrp(cluster, original)
    assert tuning.vrrp_tuning(cluster) == original
    annotations = cluster.core.read_namespaced_service("demo", "demo").metadata.annotations
    assert VERBATIM_ANNOTATION not in annotations  # removed, not left as an empty object
    tuning.wait_for_advert_interval(cluster, 1.0)
    with pytest.raises(KalabError, match="deploy the demo first"):
        tuning.vrrp_tuning(cluster, "demo", "nope")


def test_exporter_samples_and_master(seeded: SeededLab) -> None:
    scrapes = exporter.sample(seeded.cluster, 2.0, 1.0)
    assert scrapes["scraped_at"].nunique() >= 3 * 2 - 1  # three rounds over two pods (timestamps per pod)
    master = exporter.wait_for_master(seeded.cluster)
    rates = advert_rates(scrapes, "demo/demo").set_index("node")
    assert rates.loc[master, "state"] == "MASTER" and 0.5 <= rates.loc[master, "adverts_per_s"] <= 1.5
    with pytest.raises(KalabError, match=r"No single keepalived MASTER for demo/none after 0\.5 s"):
        exporter.wait_for_master(seeded.cluster, "demo/none", timeout=0.5)
    with pytest.raises(KalabError, match="interval"):
        exporter.sample(seeded.cluster, 1.0, 2.0)


def test_the_live_exporter_chart_scrapes_and_redraws(seeded: SeededLab) -> None:
    chart = ExporterChart(seeded.cluster, "demo/demo", every_s=0.5, duration_s=1.0)
    chart.run()
    fig = chart.last
    assert chart.frames in (2, 3) and chart.png.startswith(b"\x89PNG")  # one redraw per 0.5 s, in 1 s
    assert fig is not None and chart.scrapes["scraped_at"].nunique() == 2 * chart.frames  # a scrape per pod each
    state_lines = {line.get_label() for line in fig.axes[0].get_lines()}
    assert state_lines == {"master-1", "master-2"}
    assert set(advert_rates(chart.scrapes, "demo/demo")["state"]) == {"MASTER", "BACKUP"}


class _Page(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"Welcome to the demo<br>127.0.0.1"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


def test_without_a_site_the_prober_runs_on_this_machine(seeded: SeededLab, tmp_path: Path) -> None:
    """A real cluster's clients are this machine: probe a page served on loopback (never a lab address)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        site = site_for(connect(str(kubeconfig_with(seeded, tmp_path, None))))
        frame = site.probe(f"http://127.0.0.1:{server.server_address[1]}/", duration=0.5, rate=20.0)
    finally:
        server.shutdown()
        thread.join(timeout=5)
    assert len(frame) == 10 and frame["ok"].all() and set(frame["backend"]) == {"127.0.0.1"}
    assert frame.attrs["summary"]["requests"] == 10


def test_kalab_failover_on_a_clusters_service(seeded: SeededLab, tmp_path: Path) -> None:
    ran = run_kalab("failover", "--kubeconfig", str(seeded.info.kubeconfig), "--kind", "graceful", "--json")
    assert ran.returncode == 0, ran.stderr
    (trial,) = json.loads(ran.stdout)
    assert trial["kind"] == "graceful" and trial["new_master"] not in (None, trial["old_master"])
    assert "clients on the lab's bastion" in ran.stderr
    plain = kubeconfig_with(seeded, tmp_path, None)
    refused = run_kalab("failover", "--kubeconfig", str(plain), "--kind", "crash")
    assert refused.returncode == 1 and "needs access to the nodes" in one_stderr_line(refused)
    missing = run_kalab("failover", "--kubeconfig", str(plain), "--kind", "graceful", "--service", "nope")
    assert missing.returncode == 1 and "deploy the demo first" in one_stderr_line(missing)


def test_the_discovery_cache_lives_and_dies_with_the_connection(seeded: SeededLab) -> None:
    tmp = Path(tempfile.gettempdir())
    osrcp, dirs = set(tmp.glob("osrcp-*.json")), set(tmp.glob("kalab-discovery-*"))
    cluster = connect(str(seeded.info.kubeconfig))
    sccs = cluster.dynamic.resources.get(api_version="security.openshift.io/v1", kind="SecurityContextConstraints")
    assert sccs.get(name="privileged").metadata.name == "privileged"
    (mine,) = set(tmp.glob("kalab-discovery-*")) - dirs
    assert (mine / "discovery.json").exists() and set(tmp.glob("osrcp-*.json")) == osrcp
    del sccs, cluster
    gc.collect()
    assert not mine.exists()
