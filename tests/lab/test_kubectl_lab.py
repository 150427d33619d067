"""Real kubectl against `kalab lab up`: the seed's commands, with `kubectl` where the seed has `oc`."""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest
import yaml
from kubernetes import client as k8s
from kubernetes import config
from kubernetes.stream import portforward

from kalab.lab import control
from kalab.lab.dataplane import naming
from kalab.model import manifests
from tests.support.labs import running_lab
from tests.support.markers import needs_lab_tools
from tests.support.waiting import stop_process, wait_for

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl")
LAB = "t-kubectl"
BASTION = naming.bastion_ns(naming.DEFAULT_PREFIX)
KUBECTL = str(Path(sys.executable).with_name("kubectl"))
MACHINE_KUBECTL = "/usr/bin/kubectl"  # picks a release that matches the server (1.30 for the lab)
T = TypeVar("T")


def until(what: str, probe: Callable[[], T], timeout: float = 60.0) -> T:
    """Wait for `probe` (the order reads like the seed's steps: what, how, how long)."""
    return wait_for(probe, timeout, what, 0.1)


@pytest.fixture(scope="module")
def lab() -> Iterator[control.LabInfo]:
    with running_lab(LAB) as info:
        yield info


@pytest.fixture(scope="module")
def kubectl(lab: control.LabInfo, tmp_path_factory: pytest.TempPathFactory) -> Callable[..., str]:
    home = tmp_path_factory.mktemp("kubectl-home")  # kubectl's discovery cache stays in the test's folder
    env = {"PATH": os.environ.get("PATH", ""), "KUBECONFIG": str(lab.kubeconfig), "HOME": str(home)}

    def run(*argv: str, ok: bool = True) -> str:
        done = subprocess.run([KUBECTL, *argv], capture_output=True, text=True, timeout=60, env=env)
        if ok:
            assert done.returncode == 0, f"kubectl {' '.join(argv)}: {done.stderr}"
            assert "warning" not in done.stderr.lower(), done.stderr
        return done.stdout

    return run


@contextlib.contextmanager
def port_forward(binary: str, env: dict[str, str], *args: str) -> Iterator[int]:
    """`kubectl port-forward … :PORT` running; yields the local port it listens on, and ends it by PID after."""
    process = subprocess.Popen(
        [binary, "port-forward", *args], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    timer = threading.Timer(60, process.kill)  # bounds the wait for its first line
    try:
        timer.start()
        assert process.stdout is not None
        line = process.stdout.readline()
        timer.cancel()
        found = re.match(r"Forwarding from 127\.0\.0\.1:(\d+) ->", line)
        assert found, f"kubectl port-forward: {line!r} {process.stderr.read() if process.poll() is not None else ''}"
        yield int(found.group(1))
    finally:
        timer.cancel()
        stop_process(process)


def get_local(port: int, path: str) -> str:
    """An HTTP GET to 127.0.0.1:`port` (kubectl's end of the forward, on the host's loopback)."""
    with socket.create_connection(("127.0.0.1", port), timeout=30) as sock:
        sock.settimeout(30)
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return data.decode("utf-8", "replace")


def write(tmp_path: Path, name: str, docs: list[dict[str, object]]) -> str:
    path = tmp_path / name
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    return str(path)


def test_the_seed_with_kubectl(lab: control.LabInfo, kubectl: Callable[..., str], tmp_path: Path) -> None:
    nodes = kubectl("get", "nodes")
    assert re.search(r"master-0\s+Ready", nodes) and re.search(r"master-2\s+Ready", nodes)

    # The operator from its Subscription, then the seed's `oc label node` lines.
    kubectl("apply", "-f", write(tmp_path, "olm.yaml", manifests.olm_install()))
    until(
        "the CSV to succeed",
        lambda: "Succeeded" in kubectl("get", "csv", "-n", "keepalived-operator") or None,
    )
    for node in ("master-2", "master-1"):
        assert "labeled" in kubectl("label", "node", node, "node-role.kubernetes.io/loadbalancer=")

    group = manifests.keepalived_group(interface="kalab-eth0")
    kubectl("apply", "-f", write(tmp_path, "group.yaml", [group]))
    kubectl("patch", "scc", "privileged", "--type=json", "-p", json.dumps(manifests.scc_grant(form="users")))
    kubectl(
        "patch",
        "network",
        "cluster",
        "--type=merge",
        "-p",
        manifests.network_patch_json("172.21.6.33/27", "172.21.6.33/27"),
    )

    namespace = {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "demo"}}
    demo = write(tmp_path, "demo.yaml", [namespace, *manifests.demo()])
    kubectl("apply", "-f", demo)

    def external_ips() -> str | None:
        # The controller writes status.loadBalancer.ingress and spec.externalIPs separately, and the column shows
        # whichever is there: wait until it shows both, as asserted below.
        for ln in kubectl("get", "svc", "-n", "demo").splitlines():
            fields = ln.split()
            if len(fields) > 3 and "172.21.6." in fields[3] and "," in fields[3]:
                return ln
        return None

    line = until("both EXTERNAL-IP fields on the demo service", external_ips)
    fields = line.split()
    assert fields[:2] == ["demo", "LoadBalancer"] and fields[2].startswith("172.30.")
    vip = fields[3].split(",")[0]
    assert fields[3] == f"{vip},{vip}"  # spec.externalIPs and status.loadBalancer.ingress, as in the seed
    assert re.fullmatch(r"80:3\d{4}/TCP", fields[4])

    # A request from the bastion shows up in a demo pod's log.
    until(
        "the VIP to answer from the bastion",
        lambda: (
            subprocess.run(
                lab.entry().command(BASTION, ["curl", "-s", "--max-time", "2", f"http://{vip}/"]),
                capture_output=True,
                text=True,
                timeout=30,
            ).stdout
            or None
        ),
    )
    # The demo logs a request after it has answered, and the kubelet's supervisor copies the line into the log
    # file after that: wait for it.
    until(
        "the request in a demo pod's log",
        lambda: "GET /" in kubectl("logs", "-n", "demo", "test-0") + kubectl("logs", "-n", "demo", "test-1"),
    )

    # `exec … -- ip addr` in a keepalived pod: hostNetwork, so it shows its node's address.
    pods = kubectl(
        "get",
        "pods",
        "-n",
        "keepalived-operator",
        "-l",
        "keepalivedGroup=keepalivedgroup-workers",
        "-o",
        "jsonpath={.items[*].metadata.name}",
    ).split()
    assert len(pods) == 2
    addresses = kubectl("exec", "-n", "keepalived-operator", pods[0], "-c", "keepalived", "--", "ip", "addr")
    assert re.search(r"inet 192\.168\.7\.1[45]/24", addresses)

    # `port-forward` to a keepalived pod's exporter (hostNetwork: its node's namespace) and to a demo pod (its own
    # namespace), with the venv's kubectl and the machine's: the bytes cross into the lab only through the kubelet.
    env = {"PATH": os.environ.get("PATH", ""), "KUBECONFIG": str(lab.kubeconfig), "HOME": str(tmp_path)}
    pod_ip = kubectl("get", "pod", "-n", "demo", "test-0", "-o", "jsonpath={.status.podIP}")
    for binary in (KUBECTL, *([MACHINE_KUBECTL] if os.path.exists(MACHINE_KUBECTL) else [])):
        with port_forward(binary, env, "-n", "keepalived-operator", f"pod/{pods[0]}", ":9650") as local:
            metrics = get_local(local, "/metrics")
            assert metrics.startswith("HTTP/1.") and " 200 " in metrics.splitlines()[0], metrics[:200]
            assert "keepalived_up" in metrics
        with port_forward(binary, env, "-n", "demo", "pod/test-0", ":80") as local:
            page = get_local(local, "/")
            assert " 200 " in page.splitlines()[0] and pod_ip in page, page[:300]  # the page names its pod's IP
    # The official Python client (a notebook's way) forwards over websocket channels instead.
    with contextlib.closing(config.new_client_from_config(config_file=str(lab.kubeconfig))) as api_client:
        api = k8s.CoreV1Api(api_client)
        forward = portforward(api.connect_get_namespaced_pod_portforward, pods[0], "keepalived-operator", ports="9650")
        try:
            exporter = forward.socket(9650)
            exporter.settimeout(30)
            exporter.sendall(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
            answer = b""
            while b"keepalived_up" not in answer:
                chunk = exporter.recv(65536)
                assert chunk, answer
                answer += chunk
        finally:
            forward.close()

    kubectl("delete", "-f", demo)
    until("the demo service to go", lambda: None if "demo" in kubectl("get", "svc", "-A") else "gone")
    until("the demo namespace to go", lambda: None if "demo" in kubectl("get", "ns") else "gone")
