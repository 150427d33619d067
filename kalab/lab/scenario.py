"""A throwaway data plane in front of the seed's demo: what `kalab failover` uses when no lab is running.

It is the seed after every step has run, without a control plane: two demo pods (test-0 on master-0, test-1 on
master-2) serving the php page, keepalived and its exporter on the two loadbalancer nodes (master-1, master-2)
carrying the demo service's VIP, and kube-proxy's nat rules on every node. Everything is real: namespaces, veths,
keepalived, iptables, HTTP. Built in a few seconds, removed completely by `close()`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from kalab.lab.bastion import BastionClients
from kalab.lab.dataplane import kubeproxy, netlink
from kalab.lab.dataplane.entry import HERE, Entry
from kalab.lab.dataplane.processes import ProcessSpec
from kalab.lab.dataplane.records import reap_recorded
from kalab.lab.dataplane.sandbox import Sandbox, create_sandbox
from kalab.lab.dataplane.supervisor import Supervisor
from kalab.lab.dataplane.topology import Topology, TopologySpec, build, sweep
from kalab.lab.dataplane.vipwatch import VipWatcher
from kalab.lab.images.keepalived import clear_stale_pid_files, keepalived_command, pid_file
from kalab.model import manifests
from kalab.model.errors import KalabError
from kalab.model.keepalived_conf import render_config
from kalab.model.kubeproxy import Endpoint, ServicePort
from kalab.model.operator import GROUP_ANNOTATION, POD_GROUP_LABEL, VERBATIM_ANNOTATION
from kalab.model.vrrp import check_timing, master_down_interval

SCENARIO_PREFIX = "kalab-fo-"  # its own prefix: a scenario never touches a lab at the default `kalab-`
DEMO_BODY = "Hello!<br>Welcome to RedHat Developer<br>Enjoy all of the ad-free articles<br>"


@dataclass(frozen=True)
class ScenarioSpec:
    prefix: str = SCENARIO_PREFIX
    vip: str = "172.21.6.50"
    cluster_ip: str = "172.30.203.237"
    node_port: int = 31682
    demo_nodes: tuple[str, ...] = ("master-0", "master-2")
    keepalived_nodes: tuple[str, ...] = ("master-1", "master-2")
    group: str = "keepalivedgroup-workers"
    group_namespace: str = "keepalived-operator"
    advert_int: float = 1.0
    vrrp_version: int = 2

    def __post_init__(self) -> None:
        check_timing(self.advert_int, version=self.vrrp_version)
        if len(self.keepalived_nodes) < 2:
            raise KalabError("A failover needs keepalived on at least two nodes; name two keepalived nodes.")

    @property
    def url(self) -> str:
        return f"http://{self.vip}/"


@dataclass
class KeepalivedPod:
    """One keepalived DaemonSet pod: hostNetwork on its node, with the pod's volumes as directories."""

    name: str
    node: str
    host_ip: str
    pod_dir: Path

    @property
    def config_src(self) -> Path:
        return self.pod_dir / "config" / "keepalived.conf"

    @property
    def config_dst(self) -> Path:
        return self.pod_dir / "config-dst" / "keepalived.conf"

    @property
    def pid_dir(self) -> Path:
        return self.pod_dir / "pid"

    @property
    def stats_dir(self) -> Path:
        return self.pod_dir / "stats"

    @property
    def keepalived(self) -> str:
        return f"{self.name}/keepalived"

    @property
    def exporter(self) -> str:
        return f"{self.name}/prometheus-exporter"


@dataclass
class Scenario(BastionClients):
    spec: ScenarioSpec
    topology: Topology
    supervisor: Supervisor
    state_dir: Path
    lock: int = -1  # held for the scenario's lifetime (see _take_lock)
    demo_pods: list[Sandbox] = field(default_factory=list)
    keepalived_pods: list[KeepalivedPod] = field(default_factory=list)

    # -- what a failover experiment needs to know (see kalab.cluster.failover.FailoverTarget) ---------------------

    @property
    def vip(self) -> str:
        return self.spec.vip

    @property
    def url(self) -> str:
        return self.spec.url

    @property
    def bastion_ns(self) -> str:
        return self.topology.bastion_ns

    @property
    def entry(self) -> Entry:
        return HERE  # the scenario runs in the tree it built (or, as root, among the host's namespaces)

    @property
    def advert_int(self) -> float:
        return self.spec.advert_int

    @property
    def vrrp_version(self) -> int:
        return self.spec.vrrp_version

    # -- the pieces, as the operator and kube-proxy would describe them ---------------------------------------

    def group(self) -> dict[str, Any]:
        verbatim = {"vrrp_version": "3"} if self.spec.vrrp_version == 3 else None
        group = manifests.keepalived_group(
            self.spec.group, self.spec.group_namespace, interface=self.topology.interface, verbatim=verbatim
        )
        return group

    def service(self) -> dict[str, Any]:
        annotations = {GROUP_ANNOTATION: f"{self.spec.group_namespace}/{self.spec.group}"}
        if self.spec.advert_int != 1.0:
            # The runbook tunes advert_int the same way: through the service's verbatim-config annotation.
            annotations[VERBATIM_ANNOTATION] = f'{{"advert_int": "{self.spec.advert_int:g}"}}'
        return {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "demo", "namespace": "demo", "annotations": annotations},
            "spec": {
                "type": "LoadBalancer",
                "clusterIP": self.spec.cluster_ip,
                "externalIPs": [self.spec.vip],
                "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80, "nodePort": 31682}],
                "selector": {"env": "test"},
            },
            "status": {"loadBalancer": {"ingress": [{"ip": self.spec.vip}]}},
        }

    def pod_objects(self) -> list[dict[str, Any]]:
        return [
            {
                "metadata": {
                    "name": pod.name,
                    "namespace": self.spec.group_namespace,
                    "labels": {POD_GROUP_LABEL: self.spec.group},
                },
                "spec": {"nodeName": pod.node, "hostNetwork": True},
                "status": {"hostIP": pod.host_ip, "podIP": pod.host_ip},
            }
            for pod in self.keepalived_pods
        ]

    def service_port(self) -> ServicePort:
        return ServicePort(
            namespace="demo",
            name="demo",
            port_name="http",
            port=80,
            target_port=80,
            cluster_ip=self.spec.cluster_ip,
            node_port=self.spec.node_port,
            external_ips=(self.spec.vip,),
            load_balancer_ips=(self.spec.vip,),
            endpoints=tuple(Endpoint(pod.ip, 80, pod.node) for pod in self.demo_pods),
        )

    # -- questions the experiments ask ------------------------------------------------------------------------

    def pod_on(self, node: str) -> KeepalivedPod:
        for pod in self.keepalived_pods:
            if pod.node == node:
                return pod
        raise KalabError(f"No keepalived pod runs on {node}; pick one of {', '.join(self.spec.keepalived_nodes)}.")

    def node_namespaces(self) -> dict[str, str]:
        return {node: self.topology.node_ns(node) for node in self.spec.keepalived_nodes}

    def watch_vip(self) -> VipWatcher:
        return VipWatcher(self.node_namespaces(), self.topology.interface, self.spec.vip)

    def vip_holders(self) -> list[str]:
        return [
            node
            for node, ns in self.node_namespaces().items()
            if any(a.startswith(self.spec.vip + "/") for a in netlink.addresses(ns, self.topology.interface))
        ]

    def wait_for_single_master(self, timeout: float | None = None) -> str:
        """The node holding the VIP once exactly one does (an election takes ~Master_Down_Interval)."""
        limit = timeout if timeout is not None else 3 * master_down_interval(self.spec.advert_int) + 5.0
        with self.watch_vip() as watcher:
            holders = watcher.wait_for(lambda h: len(h) == 1, limit, "exactly one node to hold the VIP")
        return holders[0]

    def curl_from_bastion(self, url: str | None = None, timeout: float = 2.0) -> str:
        """One request from the trainee's machine (the bastion namespace), as `curl` in the seed."""
        done = netlink.run_in(
            self.topology.bastion_ns,
            ["curl", "-sS", "--max-time", f"{timeout:g}", url or self.spec.url],
            check=False,
            timeout=timeout + 5,
        )
        if done.returncode != 0:
            raise KalabError(f"curl {url or self.spec.url} from the bastion failed: {done.stderr.strip()}")
        return done.stdout

    def scrape(self, node: str, timeout: float = 3.0) -> str:
        """The keepalived exporter's /metrics on `node`, fetched from the bastion."""
        ip = self.topology.node(node).ip
        return self.curl_from_bastion(f"http://{ip}:9650/metrics", timeout)

    # -- failures and their repair ------------------------------------------------------------------------------

    def stop_keepalived(self, node: str, sig: int) -> None:
        """SIGTERM is a graceful stop; SIGKILL hits the whole process group at once, as a crash would."""
        self.supervisor.signal(self.pod_on(node).keepalived, sig, group=sig == signal.SIGKILL)

    def keepalived_running(self, node: str) -> bool:
        return self.supervisor.status(self.pod_on(node).keepalived).state == "running"

    def start_keepalived(self, node: str) -> None:
        pod = self.pod_on(node)
        status = self.supervisor.status(pod.keepalived)
        if status.state != "exited":
            self.supervisor.wait(pod.keepalived, lambda s: s.state == "exited", 10.0)
        _start_keepalived(self.supervisor, self.topology, pod)

    def set_link(self, node: str, up: bool) -> None:
        self.topology.set_uplink(node, up)

    # -- teardown ----------------------------------------------------------------------------------------------

    def close(self) -> None:
        try:
            self.supervisor.close(grace=3.0)
        finally:
            reap_recorded(self.state_dir)
            self.topology.teardown()
            shutil.rmtree(self.state_dir, ignore_errors=True)
            if self.lock >= 0:
                _lock_path(self.spec.prefix).unlink(missing_ok=True)  # leave no file behind
                os.close(self.lock)  # closing the descriptor releases the lock
                self.lock = -1

    def __enter__(self) -> Scenario:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def _start_demo_pod(scenario: Scenario, node: str, index: int) -> Sandbox:
    sandbox = create_sandbox(scenario.topology, node, f"demo/test-{index}")
    scenario.demo_pods.append(sandbox)
    scenario.supervisor.start(
        ProcessSpec(
            name=f"demo/test-{index}/php",
            argv=_python_module("kalab.lab.images.php_demo", "--port", "80", "--ip", sandbox.ip),
            netns=sandbox.netns,
            restart_policy="OnFailure",
        )
    )
    return sandbox


def _start_keepalived(supervisor: Supervisor, topology: Topology, pod: KeepalivedPod) -> None:
    clear_stale_pid_files(pod.pid_dir)
    argv, env = keepalived_command(pod.name, pod.config_dst, pod.pid_dir, pod.stats_dir)
    # "Never": the experiment decides when keepalived comes back, so a crash's stale VIP can be measured.
    supervisor.start(ProcessSpec(name=pod.keepalived, argv=argv, netns=topology.node_ns(pod.node), env=env))


def _keepalived_pod(scenario: Scenario, node: str, index: int) -> KeepalivedPod:
    # DaemonSet pods are named <group>-<5 random characters>; fixed suffixes keep runs comparable.
    name = f"{scenario.spec.group}-{'abcde'[index] * 5}"
    pod = KeepalivedPod(name, node, scenario.topology.node(node).ip, scenario.state_dir / "pods" / name)
    for folder in (pod.config_src.parent, pod.config_dst.parent, pod.pid_dir, pod.stats_dir):
        folder.mkdir(parents=True, exist_ok=True)
    return pod


def _start_keepalived_pods(scenario: Scenario) -> None:
    topology, supervisor = scenario.topology, scenario.supervisor
    for index, node in enumerate(scenario.spec.keepalived_nodes):
        scenario.keepalived_pods.append(_keepalived_pod(scenario, node, index))
    config = render_config(scenario.group(), [scenario.service()], scenario.pod_objects(), previous_router_ids={})
    for pod in scenario.keepalived_pods:
        ns = topology.node_ns(pod.node)
        pod.config_src.write_text(config.text, encoding="utf-8")
        netlink.run_in(
            ns,
            _python_module(
                "kalab.lab.images.operator_image",
                "config-setup",
                "--src",
                str(pod.config_src),
                "--dst",
                str(pod.config_dst),
            ),
        )
        _start_keepalived(supervisor, topology, pod)
        supervisor.start(
            ProcessSpec(
                name=pod.exporter,
                argv=_python_module(
                    "kalab.lab.images.operator_image",
                    "exporter",
                    "--listen",
                    f"{pod.host_ip}:9650",
                    "--pid-file",
                    str(pid_file(pod.pid_dir)),
                    "--tmp-dir",
                    str(pod.stats_dir),
                ),
                netns=ns,
                restart_policy="Always",
            )
        )


def _wait_for_backends(scenario: Scenario, timeout: float = 15.0) -> None:
    """Each demo pod answers on its own IP (checked from its node, inside the lab)."""
    for pod in scenario.demo_pods:
        deadline = time.monotonic() + timeout
        while True:
            done = netlink.run_in(
                scenario.topology.node_ns(pod.node),
                ["curl", "-s", "--max-time", "1", f"http://{pod.ip}/"],
                check=False,
            )
            if done.returncode == 0 and done.stdout.startswith(DEMO_BODY):
                break
            if time.monotonic() > deadline:
                raise KalabError(f"The demo pod {pod.pod_key} at {pod.ip} did not answer within {timeout:g} s.")
            time.sleep(0.05)


def _lock_path(prefix: str) -> Path:
    return Path(tempfile.gettempdir()) / f"{prefix}lock"


def _take_lock(prefix: str) -> int:
    """One scenario per prefix at a time: the lock tells a crashed scenario's leftovers from a running one's."""
    fd = os.open(_lock_path(prefix), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise KalabError(
            f"Another demo data plane ({prefix}…) is running on this machine; wait for it to finish."
        ) from None
    return fd


def recover(prefix: str = SCENARIO_PREFIX) -> list[str]:
    """Remove what a crashed scenario left: its recorded processes (by PID), state dirs, namespaces, lock file."""
    lock = _take_lock(prefix)  # refuses while a scenario at this prefix is still running
    try:
        return _clear_leftovers(prefix)
    finally:
        _lock_path(prefix).unlink(missing_ok=True)
        os.close(lock)


def _clear_leftovers(prefix: str) -> list[str]:
    removed: list[str] = []
    for state_dir in sorted(Path(tempfile.gettempdir()).glob(f"{prefix}state-*")):
        reap_recorded(state_dir)
        shutil.rmtree(state_dir, ignore_errors=True)
        removed.append(str(state_dir))
    removed.extend(sweep(prefix).removed)
    return removed


def start(spec: ScenarioSpec | None = None, wait: bool = True) -> Scenario:
    """Build the scenario (after clearing any crashed one); with `wait`, return once the backends answer and one
    node holds the VIP."""
    spec = spec or ScenarioSpec()
    lock = _take_lock(spec.prefix)
    try:
        _clear_leftovers(spec.prefix)
        topology = build(TopologySpec.seed(spec.prefix))
    except BaseException:
        os.close(lock)
        raise
    state_dir = Path(tempfile.mkdtemp(prefix=f"{spec.prefix}state-"))
    scenario = Scenario(spec, topology, Supervisor(state_dir), state_dir, lock)
    try:
        for index, node in enumerate(spec.demo_nodes):
            _start_demo_pod(scenario, node, index)
        kubeproxy.program_all(topology, [scenario.service_port()])
        _start_keepalived_pods(scenario)
        if wait:
            _wait_for_backends(scenario)
            scenario.wait_for_single_master()
    except BaseException:
        scenario.close()
        raise
    return scenario
