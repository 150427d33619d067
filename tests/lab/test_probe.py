"""The prober, run inside one namespace against the php demo in another: complete, on schedule, honest failures."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from kalab.cluster.probejob import probe_timeline, start_probe
from kalab.cluster.prober import parse_url
from kalab.lab.dataplane.entry import HERE
from kalab.lab.dataplane.processes import ProcessSpec
from kalab.lab.dataplane.supervisor import ManagedProcess, Supervisor
from kalab.model.clientsite import ClientPlace
from kalab.model.errors import KalabError
from kalab.model.failover import analyse_outage
from kalab.model.probes import FRAME_COLUMNS, ProbeRecord, check_limits, records_to_frame, summarise
from tests.lab.nets import Ns, linked_pair
from tests.support.markers import needs_lab_tools, needs_root_tools
from tests.support.waiting import wait_for


def place(ns: str) -> ClientPlace:
    """Clients in the test namespace `ns` (these tests run as root among the host's namespaces)."""
    return ClientPlace(f"namespace {ns}", tuple(HERE.command(ns, [])))


def one_sentence(message: str) -> bool:
    return message.endswith(".") and len(re.findall(r"[.!?](?:\s|$)", message)) == 1


@pytest.fixture
def lab(tmp_path: Path) -> Iterator[tuple[Ns, Ns, ManagedProcess]]:
    """A bastion-like client namespace and a pod namespace running the demo under the supervisor."""
    with linked_pair() as (client, pod), Supervisor(tmp_path / "kalab-state") as sup:
        demo = sup.start(ProcessSpec("demo", [sys.executable, "-m", "kalab.lab.images.php_demo"], netns=pod.name))
        wait_for(lambda: "listening" in demo.log_path.read_text(), 15, "the demo to listen")
        yield client, pod, demo


@needs_root_tools("ip")
def test_200_hz_for_2_s_gets_every_answer_from_the_pod(lab: tuple[Ns, Ns, ManagedProcess]) -> None:
    client, pod, _ = lab
    frame = probe_timeline(f"http://{pod.ip}/", duration=2.0, rate=200.0, timeout=1.0, place=place(client.name))
    summary = frame.attrs["summary"]
    print("probe 200 Hz x 2 s:", json.dumps(summary))  # the performance figures, for the test log

    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert len(frame) == 400  # no request silently dropped: one row per planned request
    assert frame["seq"].tolist() == list(range(400))
    assert frame["ok"].all() and (frame["status"] == 200).all() and (frame["error"] == "").all()
    assert set(frame["backend"]) == {pod.ip}
    assert frame["t"].is_monotonic_increasing
    assert summary["requests"] == 400 and summary["failed"] == 0
    # The timeline is what the failover analysis reads.
    outage = analyse_outage(frame)
    assert outage.lost == 0 and outage.requests == 400 and outage.backends_after == (pod.ip,)


@needs_root_tools("ip")
def test_a_server_that_goes_away_shows_up_as_failed_rows(lab: tuple[Ns, Ns, ManagedProcess]) -> None:
    client, pod, demo = lab
    job = start_probe(f"http://{pod.ip}/", duration=3.0, rate=100.0, timeout=0.5, place=place(client.name))
    try:
        t0 = job.wait_started()
        wait_for(lambda: time.time() > t0 + 1.0, 10, "a second of healthy probing")
        stopping = time.time()
        demo.stop(grace=2.0)
        stopped = time.time()
        frame = job.result()
    finally:
        job.stop()

    assert len(frame) == 300
    before, after = frame[frame["t"] < stopping], frame[frame["t"] > stopped + 0.05]
    assert len(before) >= 90 and before["ok"].all()
    assert len(after) > 50
    assert not after["ok"].any()
    assert set(after["error"]) == {"ECONNREFUSED"}  # the pod's namespace is still there, its port is closed
    assert after["backend"].isna().all() and after["status"].isna().all()
    outage = analyse_outage(frame, injected_at=stopping)
    assert not outage.recovered and outage.lost >= len(after)


@needs_root_tools("ip")
def test_no_answer_at_all_is_a_timeout(lab: tuple[Ns, Ns, ManagedProcess]) -> None:
    client, _, _ = lab
    # An address on the client's subnet that nobody holds: ARP gets no reply, so the connect never completes.
    frame = probe_timeline("http://10.254.1.99/", duration=0.2, rate=50.0, timeout=0.3, place=place(client.name))
    assert len(frame) == 10
    assert not frame["ok"].any()
    assert set(frame["error"]) <= {"timeout", "EHOSTUNREACH"}


@pytest.mark.parametrize(
    "url",
    [
        "https://10.0.0.1/",
        "ftp://10.0.0.1/",
        "10.0.0.1",
        "http:///path",
        "http://[::1]/",
        "http://10.0.0.256/",
        "http://10.0.0.1:99999/",
        "http://10.0.0.1:0/",
        "http://user:pw@10.0.0.1/",
        "http://bad_host!/",
        "http://10.0.0.1/a b",
    ],
)
def test_bad_urls_are_refused_in_one_sentence(url: str) -> None:
    with pytest.raises(KalabError) as caught:
        parse_url(url)
    assert one_sentence(str(caught.value)), str(caught.value)


def test_good_urls_are_understood() -> None:
    target = parse_url("http://172.21.6.50/")
    assert (target.ip, target.port, target.path) == ("172.21.6.50", 80, "/")
    target = parse_url("http://demo.example:8080/index.php?x=1", resolve=False)
    assert (target.host, target.port, target.path) == ("demo.example", 8080, "/index.php?x=1")
    assert target.request().startswith(b"GET /index.php?x=1 HTTP/1.1\r\nHost: demo.example:8080\r\n")


@pytest.mark.parametrize(
    ("duration", "rate", "timeout"),
    [(0, 100, 1), (601, 100, 1), (10, 0, 1), (10, 5000, 1), (10, 100, 0), (10, 100, 60), (600, 2000, 1)],
)
def test_load_is_bounded(duration: float, rate: float, timeout: float) -> None:
    with pytest.raises(KalabError) as caught:
        check_limits(duration, rate, timeout)
    assert one_sentence(str(caught.value)), str(caught.value)


def test_planned_requests_are_rate_times_duration() -> None:
    assert check_limits(2.0, 200.0, 1.0) == 400
    assert check_limits(0.001, 1.0, 1.0) == 1


@needs_lab_tools("ip")
def test_a_missing_namespace_is_refused() -> None:
    with pytest.raises(KalabError, match="namespace kalab-no-such-namespace failed: Cannot open network namespace"):
        probe_timeline("http://10.0.0.1/", 1.0, 10.0, place=place("kalab-no-such-namespace"))


def test_cli_reports_bad_input_without_sending_anything(tmp_path: Path) -> None:
    out = tmp_path / "kalab-probe.csv"
    argv = [sys.executable, "-m", "kalab.cluster.prober", "https://10.0.0.1/", "--for", "1", "--out", str(out)]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("error: The probe URL") and not out.exists()
    missing_for = subprocess.run([*argv[:4], "--out", str(out)], capture_output=True, text=True, timeout=60)
    assert missing_for.returncode != 0 and "--for" in missing_for.stderr


def test_records_make_the_failover_timeline() -> None:
    page_ip = "10.254.2.7"
    records = [
        ProbeRecord(
            i,
            100.0 + i * 0.01,
            1.0,
            i not in (3, 4),
            200 if i not in (3, 4) else None,
            "" if i not in (3, 4) else "timeout",
            page_ip if i not in (3, 4) else None,
            0.1,
        )
        for i in range(8)
    ]
    frame = records_to_frame(records)
    assert list(frame.columns) == list(FRAME_COLUMNS)
    assert frame["backend"].tolist()[2:5] == [page_ip, None, None]
    outage = analyse_outage(frame)
    assert outage.lost == 2 and outage.outage_ms == pytest.approx(20.0)
    summary = summarise(records, rate=100.0)
    assert (summary.requests, summary.ok, summary.failed) == (8, 6, 2)
    assert summary.achieved_rate_hz == pytest.approx(100.0)
