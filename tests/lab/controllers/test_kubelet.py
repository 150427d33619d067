"""The kubelet on a real topology: demo pods serving their page, an unknown image refused, and the keepalived
DaemonSet's pods running real keepalived with VIPs, logs, exec, the exporter through the proxy and live reloads.

Everything runs in lab namespaces with a test-only prefix; requests to lab addresses go from node namespaces.
The module's fixture checks that no namespace and no process of this test is left at the end.
"""

from __future__ import annotations

import ipaddress
import os
import shutil
import signal
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from kalab.lab.apiserver.errors import ApiError
from kalab.lab.apiserver.hooks import ExecRequest, LogRequest
from kalab.lab.controllers.kubelet import Kubelet
from kalab.lab.controllers.workloads import DaemonSetController, Scheduler
from kalab.lab.dataplane import netlink
from kalab.lab.dataplane.records import reap_recorded
from kalab.lab.dataplane.sandbox import host_network_sandbox, list_sandboxes
from kalab.lab.dataplane.supervisor import Supervisor
from kalab.lab.dataplane.topology import Topology, TopologySpec, build, lab_namespaces, sweep
from kalab.lab.images.outcomes import ContainerConfigError, Program, Refusal, UnknownImage
from kalab.lab.images.php_demo import GREETING
from kalab.lab.images.registry import program_for
from kalab.lab.images.volumes import PodVolumes, prepare_volumes
from kalab.model import manifests, operator_manifests
from kalab.model.keepalived_conf import render_config
from kalab.model.operator import GROUP_ANNOTATION
from kalab.model.prometheus import parse_exposition
from tests.lab.controllers.cluster_kit import ControlPlane, wait_for
from tests.support.markers import needs_root_tools
from tests.support.paths import FIXTURES

pytestmark = needs_root_tools("keepalived", "ip", "curl")
PREFIX = f"kalab-t{os.getpid()}-kl-"
GROUP = "keepalivedgroup-workers"
GROUP_NS = "keepalived-operator"
LB = "node-role.kubernetes.io/loadbalancer"
VIP, VIP2 = "172.21.6.50", "172.21.6.51"
Obj = dict[str, Any]


@dataclass
class Lab:
    cp: ControlPlane
    topology: Topology
    supervisor: Supervisor
    kubelet: Kubelet


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    state_dir = Path(tempfile.mkdtemp(prefix="kalab-kl-"))
    topology = build(TopologySpec.seed(PREFIX))
    supervisor = Supervisor(state_dir / "supervisor")
    kubelet: Kubelet | None = None
    cp = ControlPlane(state_dir, topology)
    cp.ctx.supervisor = supervisor
    try:
        for namespace in ("demo", GROUP_NS):
            cp.namespace(namespace)
        for name in topology.node_names:
            labels = {"kubernetes.io/hostname": name, **({LB: ""} if name != "master-0" else {})}
            cp.create("/nodes", {"metadata": {"name": name, "labels": labels}})
        kubelet = Kubelet(cp.ctx)
        cp.start(Scheduler(cp.ctx), DaemonSetController(cp.ctx), kubelet)
        yield Lab(cp, topology, supervisor, kubelet)
        cp.stop()
        kubelet.close()
        assert kubelet.running_pods() == []
        assert all(s.state == "exited" for s in supervisor.statuses().values())
        assert all(not pids for pids in netlink.netns_pids(lab_namespaces(PREFIX)).values())
    finally:
        cp.stop()
        if kubelet is not None:
            kubelet.close()
        supervisor.close(grace=2.0)
        reap_recorded(state_dir / "supervisor")
        sweep(PREFIX)
        shutil.rmtree(state_dir, ignore_errors=True)
    assert lab_namespaces(PREFIX) == []
    assert not any(ns.startswith(PREFIX) for ns in netlink.list_netns())


def pod(lab: Lab, namespace: str, name: str) -> Obj:
    found = lab.cp.get("/pods", name, namespace)
    assert found is not None, f"pod {namespace}/{name} is gone"
    return found


def running(lab: Lab, namespace: str, name: str) -> Obj | None:
    found = lab.cp.get("/pods", name, namespace) or {}
    status = found.get("status") or {}
    ready = all(c.get("ready") for c in status.get("containerStatuses") or [{}])
    return found if status.get("phase") == "Running" and ready else None


def curl(ns: str, url: str) -> str:
    done = netlink.run_in(ns, ["curl", "-sS", "--max-time", "3", url], check=False, timeout=10)
    return done.stdout if done.returncode == 0 else ""


def run_exec(
    lab: Lab, namespace: str, name: str, container: str | None, *command: str, tty: bool = False
) -> tuple[int, str]:
    session = lab.kubelet.exec(ExecRequest(namespace, name, container, command, tty=tty))
    output = b""
    while True:
        item = session.read(10.0)
        assert item is not None, "exec produced nothing for 10 s"
        stream, data = item
        if stream == 0:
            break
        output += data
    return session.wait(10), output.decode(errors="replace")


def log_text(lab: Lab, namespace: str, name: str, container: str | None = None, **options: Any) -> str:
    return b"".join(lab.kubelet.logs(LogRequest(namespace, name, container, **options))).decode(errors="replace")


# --- the demo ---------------------------------------------------------------------------------------------


def test_demo_pods_run_with_pod_ips_and_serve_the_seeds_page(lab: Lab) -> None:
    for obj in manifests.demo():
        if obj["kind"] == "Pod":
            lab.cp.create("/pods", obj, "demo")
    pods = {
        name: wait_for(lambda n=name: running(lab, "demo", n), timeout=20, what=f"{name} Running")
        for name in ("test-0", "test-1")
    }
    for name, node in (("test-0", "master-0"), ("test-1", "master-2")):
        status = pods[name]["status"]
        assert pods[name]["spec"]["nodeName"] == node
        assert ipaddress.ip_address(status["podIP"]) in ipaddress.ip_network(lab.topology.node(node).pod_cidr)
        assert status["podIPs"] == [{"ip": status["podIP"]}] and status["hostIP"] == lab.topology.node(node).ip
        assert status["qosClass"] == "BestEffort" and status["startTime"]
        assert {c["type"]: c["status"] for c in status["conditions"]} == {
            "Initialized": "True",
            "Ready": "True",
            "ContainersReady": "True",
            "PodScheduled": "True",
        }
        [php] = status["containerStatuses"]
        assert (
            php["name"] == "php"
            and php["image"] == manifests.DEMO_IMAGE
            and php["imageID"].startswith("quay.io/wangzheng422/php@sha256:")
        )
        assert php["restartCount"] == 0 and php["started"] and "running" in php["state"]
        # From another node's namespace, never from the host.
        body = wait_for(
            lambda ip=status["podIP"]: curl(lab.topology.node_ns("master-1"), f"http://{ip}/"),
            timeout=10,
            what=f"{name}'s page",
        )
        assert body == GREETING + status["podIP"]
        answer = lab.kubelet.proxy("demo", name, 80, "/", "GET", [("Accept", "text/html")], b"")
        assert answer.status == 200 and answer.body == (GREETING + status["podIP"]).encode()
        assert ("Content-Type", "text/html; charset=UTF-8") in answer.headers
    # The demo prints this line before it answers, but the supervisor copies it from the pipe into the log file in
    # its own time: wait for it there.
    wait_for(lambda: "listening on 0.0.0.0:80" in log_text(lab, "demo", "test-0"), timeout=10, what="test-0's log line")
    stamped = log_text(lab, "demo", "test-0", timestamps=True, tail_lines=1)
    assert stamped.count("\n") == 1 and stamped[:4].isdigit() and stamped.split(" ", 1)[0].endswith("Z")
    code, out = run_exec(lab, "demo", "test-0", None, "ip", "-4", "-o", "addr", "show", "kalab-eth0")
    assert code == 0 and pods["test-0"]["status"]["podIP"] in out
    code, out = run_exec(lab, "demo", "test-0", None, "tty", tty=True)
    assert code == 0 and out.startswith("/dev/pts/")
    code, _ = run_exec(lab, "demo", "test-0", None, "sh", "-c", "exit 3")
    assert code == 3


def test_an_unknown_image_is_refused_and_never_runs(lab: Lab) -> None:
    lab.cp.create(
        "/pods",
        {
            "metadata": {"name": "nginx"},
            "spec": {"nodeName": "master-0", "containers": [{"name": "web", "image": "nginx:1.25"}]},
        },
        "demo",
    )

    def waiting() -> Obj | None:
        statuses = (pod(lab, "demo", "nginx").get("status") or {}).get("containerStatuses") or [{}]
        return statuses[0].get("state", {}).get("waiting")

    state = wait_for(waiting, timeout=10, what="the container to wait")
    assert state["reason"] == "ErrImagePull"
    assert state["message"].startswith("kalab lab runs only images it knows (")
    assert state["message"].endswith('"nginx:1.25" is not one of them')
    assert pod(lab, "demo", "nginx")["status"]["phase"] == "Pending"
    assert "demo/nginx/web" not in lab.supervisor.statuses()
    wait_for(lambda: (waiting() or {}).get("reason") == "ImagePullBackOff", timeout=10, what="ImagePullBackOff")
    assert "demo/nginx/web" not in lab.supervisor.statuses()

    def reasons() -> set[str]:
        events = lab.cp.store.list(lab.cp.rt("/events"), "demo")[0]
        return {e["reason"] for e in events if e["involvedObject"]["name"] == "nginx"}

    # The status may turn to ImagePullBackOff in the pass before the one that records its BackOff event (each
    # reads its own clock): wait for the events rather than read them at once.
    wait_for(lambda: {"Failed", "BackOff"} <= reasons(), timeout=5, what="the Failed and BackOff events")
    with pytest.raises(ApiError) as refused:
        lab.kubelet.logs(LogRequest("demo", "nginx", None))
    assert "is waiting to start: trying and failing to pull image" in refused.value.message
    lab.cp.store.delete(lab.cp.rt("/pods"), "demo", "nginx")
    wait_for(lambda: "demo/nginx" not in lab.kubelet.running_pods(), what="the refused pod to be forgotten")


# --- the keepalived DaemonSet -----------------------------------------------------------------------------


def group() -> Obj:
    return manifests.keepalived_group(GROUP, GROUP_NS, interface="kalab-eth0")


def service(name: str, vip: str) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": name, "namespace": "demo", "annotations": {GROUP_ANNOTATION: f"{GROUP_NS}/{GROUP}"}},
        "spec": {"type": "LoadBalancer", "externalIPs": [vip],
                 "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80}]},
        "status": {"loadBalancer": {"ingress": [{"ip": vip}]}},
    }  # fmt: skip


def config_map(*services: Obj) -> Obj:
    text = render_config(group(), list(services), [], previous_router_ids={}).text
    return operator_manifests.config_map(group(), text)


def holders(lab: Lab, vip: str) -> list[str]:
    return [
        node
        for node in ("master-1", "master-2")
        if any(a.startswith(vip + "/") for a in netlink.addresses(lab.topology.node_ns(node), "kalab-eth0"))
    ]


def test_keepalived_daemon_set_pods_hold_the_vip_and_answer_logs_exec_proxy_and_reloads(lab: Lab) -> None:
    cp = lab.cp
    cp.create("/configmaps", config_map(service("demo", VIP)), GROUP_NS)
    cp.create("apps/daemonsets", operator_manifests.daemon_set(group()), GROUP_NS)

    def both_running() -> dict[str, Obj]:
        found = cp.store.list(cp.rt("/pods"), GROUP_NS, labels=f"keepalivedGroup={GROUP}")[0]
        # The pod running() read, whose status it checked: the listed copy may predate the kubelet's last write.
        fresh = [running(lab, GROUP_NS, p["metadata"]["name"]) for p in found]
        up = {p["spec"].get("nodeName", ""): p for p in fresh if p is not None}
        return up if len(found) == 2 and len(up) == 2 else {}

    pods = wait_for(both_running, timeout=30, what="keepalived pods Running on master-1 and master-2")
    assert sorted(pods) == ["master-1", "master-2"]
    for node, found in pods.items():
        status = found["status"]
        assert status["podIP"] == status["hostIP"] == lab.topology.node(node).ip  # hostNetwork
        [init] = status["initContainerStatuses"]
        assert init["name"] == "config-setup" and init["ready"]
        assert init["state"]["terminated"]["exitCode"] == 0 and init["state"]["terminated"]["reason"] == "Completed"
        names = [c["name"] for c in status["containerStatuses"]]
        assert names == ["config-reloader", "keepalived", "prometheus-exporter"]  # sorted, as the seed shows
        keepalived = next(c for c in status["containerStatuses"] if c["name"] == "keepalived")
        assert keepalived["image"] == "registry.redhat.io/openshift4/ose-keepalived-ipfailover:latest"
    [master] = wait_for(lambda: len(h := holders(lab, VIP)) == 1 and h, timeout=20, what="one node holding the VIP")
    master_pod = pods[master]["metadata"]["name"]
    wait_for(
        lambda: "Entering MASTER STATE" in log_text(lab, GROUP_NS, master_pod, "keepalived"),
        timeout=10,
        what="keepalived's log to show the election",
    )
    with pytest.raises(ApiError) as which:
        lab.kubelet.logs(LogRequest(GROUP_NS, master_pod, None))
    assert "choose one of: [keepalived config-reloader prometheus-exporter]" in which.value.message

    code, out = run_exec(lab, GROUP_NS, master_pod, "keepalived", "ip", "addr", "show", "kalab-eth0")
    assert code == 0 and f"inet {VIP}/32" in out

    def metrics(pod_name: str) -> Any:
        answer = lab.kubelet.proxy(GROUP_NS, pod_name, 9650, "/metrics", "GET", [], b"")
        assert answer.status == 200
        return parse_exposition(answer.body.decode())

    def answered() -> Any:
        # A scrape under load may find keepalived slow to dump (keepalived_up 0); the next one gets it.
        frame = metrics(master_pod)
        return [frame] if frame.loc[frame["metric"] == "keepalived_up", "value"].tolist() == [1.0] else None

    [frame] = wait_for(answered, timeout=10, what="a scrape with keepalived_up 1")
    sent = frame[frame["metric"] == "keepalived_vrrp_advert_sent"]
    assert sent["name"].tolist() == ["demo/demo"] and sent["state"].tolist() == ["MASTER"]

    # A new service in the ConfigMap: the kubelet refreshes the volume, the reloader SIGHUPs keepalived.
    cm = config_map(service("demo", VIP), service("demo2", VIP2))
    current = cp.get("/configmaps", GROUP, GROUP_NS)
    assert current is not None
    current["data"] = cm["data"]
    cp.store.update(cp.rt("/configmaps"), current, GROUP_NS)
    wait_for(lambda: len(holders(lab, VIP2)) == 1, timeout=25, what="the reloaded config's second VIP")
    # Each pod's reloader polls on its own and logs after its SIGHUP: the VIP may come from the other pod's
    # reload before this one's line is written.
    wait_for(
        lambda: "sent SIGHUP to keepalived" in log_text(lab, GROUP_NS, master_pod, "config-reloader"),
        timeout=15,
        what=f"{master_pod}'s reloader to log its SIGHUP",
    )
    for found in pods.values():
        statuses = pod(lab, GROUP_NS, found["metadata"]["name"])["status"]["containerStatuses"]
        assert all(c["restartCount"] == 0 for c in statuses)

    # Deleting the DaemonSet deletes its pods: keepalived stops gracefully and takes the VIPs with it.
    cp.store.delete(cp.rt("apps/daemonsets"), GROUP_NS, GROUP)
    wait_for(lambda: not holders(lab, VIP) and not holders(lab, VIP2), timeout=20, what="the VIPs to go")
    wait_for(
        lambda: not any(k.startswith(f"{GROUP_NS}/") for k in lab.kubelet.running_pods()),
        timeout=20,
        what="the kubelet to drop the keepalived pods",
    )
    for name, status in lab.supervisor.statuses().items():
        if name.startswith(f"{GROUP_NS}/"):
            assert status.state == "exited" and status.pid is None, name


def ensure_demo(lab: Lab) -> None:
    if lab.cp.get("/pods", "test-0", "demo") is None:
        for obj in manifests.demo():
            if obj["kind"] == "Pod":
                lab.cp.create("/pods", obj, "demo")
    for name in ("test-0", "test-1"):
        wait_for(lambda n=name: running(lab, "demo", n), timeout=20, what=f"{name} Running")


def test_a_crashed_container_restarts_and_keeps_its_previous_log(lab: Lab) -> None:
    ensure_demo(lab)
    # Running means started, not listening: the line the previous log must hold is printed a moment later.
    wait_for(lambda: "listening on 0.0.0.0:80" in log_text(lab, "demo", "test-1"), timeout=10, what="test-1's log line")
    lab.supervisor.signal("demo/test-1/php", signal.SIGKILL, group=True)

    def restarted() -> Obj | None:
        found = running(lab, "demo", "test-1")
        statuses = (found or {}).get("status", {}).get("containerStatuses") or [{}]
        return statuses[0] if statuses[0].get("restartCount") == 1 else None

    php = wait_for(restarted, timeout=15, what="test-1's php to be restarted (restartPolicy OnFailure)")
    assert php["lastState"]["terminated"]["exitCode"] == 128 + signal.SIGKILL
    assert php["lastState"]["terminated"]["reason"] == "Error"
    assert php["containerID"] != php["lastState"]["terminated"]["containerID"]
    assert "listening on 0.0.0.0:80" in log_text(lab, "demo", "test-1", previous=True)
    with pytest.raises(ApiError):
        lab.kubelet.logs(LogRequest("demo", "test-0", None, previous=True))  # test-0 never restarted


def test_deleting_pods_stops_their_processes_and_removes_their_sandboxes(lab: Lab) -> None:
    ensure_demo(lab)
    followed: list[bytes] = []

    def follow() -> None:
        for line in lab.kubelet.logs(LogRequest("demo", "test-0", None, follow=True)):
            followed.append(line)

    follower = threading.Thread(target=follow, daemon=True)
    follower.start()
    # The follower must be reading the log before the pod goes (a deleted pod has no log to follow).
    wait_for(lambda: followed, timeout=10, what="the follower's first line")
    assert {s.pod_key for s in list_sandboxes(lab.topology)} >= {"demo/test-0", "demo/test-1"}
    pid = lab.supervisor.status("demo/test-0/php").pid
    assert pid is not None
    for name in ("test-0", "test-1"):
        lab.cp.store.delete(lab.cp.rt("/pods"), "demo", name)
    wait_for(
        lambda: not any(k.startswith("demo/") for k in lab.kubelet.running_pods()),
        timeout=20,
        what="the demo pods to be torn down",
    )
    assert lab.supervisor.status("demo/test-0/php").state == "exited"
    follower.join(timeout=10)
    assert not follower.is_alive(), "a followed log must end when its container stops"
    assert any(b"php demo stopping" in line for line in followed)
    assert not Path(f"/proc/{pid}").exists() or Path(f"/proc/{pid}/stat").read_text().split()[2] in ("Z", "X")
    assert [s.pod_key for s in list_sandboxes(lab.topology) if s.pod_key.startswith("demo/")] == []
    assert not any((lab.cp.ctx.state_dir / "kubelet" / "pods").glob("demo_*"))


# --- what each image runs (no processes: the registry's decisions on the seed's own pod) ---------------------


def seed_pod(tmp_path: Path) -> tuple[Obj, PodVolumes]:
    obj = yaml.safe_load((FIXTURES / "seed_keepalived_pod.yaml").read_text())
    volumes = prepare_volumes(obj, tmp_path, lambda kind, ns, name: {"data": {"keepalived.conf": "global_defs {}\n"}})
    return obj, volumes


def test_the_seed_pods_containers_map_to_the_labs_programs(tmp_path: Path) -> None:
    obj, volumes = seed_pod(tmp_path)
    sandbox = host_network_sandbox(Topology(TopologySpec.seed(PREFIX)), "master-1", "keepalived-operator/x")
    by_name = {c["name"]: c for c in [*obj["spec"]["initContainers"], *obj["spec"]["containers"]]}
    programs = {name: program_for(obj, c, volumes, sandbox) for name, c in by_name.items()}
    assert {n: p.role for n, p in programs.items() if isinstance(p, Program)} == {
        "config-setup": "config-setup",
        "keepalived": "keepalived",
        "config-reloader": "config-reloader",
        "prometheus-exporter": "exporter",
    }
    keepalived = programs["keepalived"]
    assert isinstance(keepalived, Program)
    dirs = volumes.dirs
    assert keepalived.argv[0] == "/usr/sbin/keepalived"
    assert "--config-id=keepalivedgroup-workers-fgzv8" in keepalived.argv  # ${POD_NAME} from the downward API
    assert f"--use-file={dirs['config-dst'] / 'keepalived.conf'}" in keepalived.argv
    assert f"--pid={dirs['pid'] / 'keepalived.pid'}" in keepalived.argv
    assert keepalived.env["TMPDIR"] == str(dirs["stats"])
    setup = programs["config-setup"]
    assert isinstance(setup, Program)
    assert setup.argv[-4:] == (
        "--src",
        str(dirs["config"] / "keepalived.conf"),
        "--dst",
        str(dirs["config-dst"] / "keepalived.conf"),
    )
    assert (dirs["config"] / "keepalived.conf").read_text() == "global_defs {}\n"
    reloader = programs["config-reloader"]
    assert isinstance(reloader, Program) and reloader.argv[-2:] == ("--pid-file", str(dirs["pid"] / "keepalived.pid"))
    exporter = programs["prometheus-exporter"]
    assert isinstance(exporter, Program)
    assert exporter.argv[4:6] == ("-web.listen-address", ":9650") and exporter.env["TMPDIR"] == str(dirs["stats"])


def test_what_the_lab_refuses_to_run(tmp_path: Path) -> None:
    obj, volumes = seed_pod(tmp_path)
    keepalived = obj["spec"]["containers"][0]
    unknown = program_for(obj, {**keepalived, "image": "quay.io/someone/keepalived:1"}, volumes, None)
    assert isinstance(unknown, UnknownImage) and unknown.reason == "ErrImagePull"
    script = program_for(obj, {**keepalived, "args": ["-c", "rm -rf /tmp/x; exec /usr/sbin/keepalived"]}, volumes, None)
    assert isinstance(script, Refusal) and "one command" in script.message
    outside = program_for(
        obj, {**keepalived, "args": ["-c", "exec /usr/sbin/keepalived --use-file=/etc/passwd"]}, volumes, None
    )
    assert isinstance(outside, Refusal) and "volume mounts" in outside.message
    host = {**obj, "spec": {**obj["spec"], "volumes": [{"name": "root", "hostPath": {"path": "/etc"}}]}}
    with pytest.raises(ContainerConfigError, match='"/etc" is refused'):
        prepare_volumes(host, tmp_path / "other", lambda kind, ns, name: None)
    missing = {**obj, "spec": {**obj["spec"], "volumes": [{"name": "config", "configMap": {"name": "absent"}}]}}
    with pytest.raises(ContainerConfigError, match='configmap "absent" not found'):
        prepare_volumes(missing, tmp_path / "third", lambda kind, ns, name: None)
