"""A failover target reached through the Kubernetes API alone: what any kubeconfig allows on any cluster.

The only failure an API client can cause faithfully is the graceful one: deleting the MASTER's keepalived pod makes
the kubelet send SIGTERM, keepalived gives the VIP up with a priority-0 advert, and the DaemonSet brings a new pod.
Which node holds the VIP is read from the keepalived exporters through the API proxy (their `state` label), so the
takeover time is as fine as one scrape round — a few tens of milliseconds on a healthy cluster.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable
from types import TracebackType

import pandas as pd
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import as_dict, fail
from kalab.cluster.connect import Cluster
from kalab.cluster.exporter import scrape, states_from_frame
from kalab.cluster.keepalived import GROUP, PLURAL, VERSION, keepalived_pods
from kalab.model.clientsite import THIS_MACHINE, ClientPlace
from kalab.model.errors import KalabError
from kalab.model.operator import carried_service, vrrp_timing
from kalab.model.vrrp import FailureKind, master_down_interval

POLL_INTERVAL = 0.05


class ExporterWatch:
    """Polls the group's exporters in a thread and logs (t, node, holds) whenever a node's MASTER state changes."""

    def __init__(self, cluster: Cluster, namespace: str, group: str, instance: str) -> None:
        self._args = (cluster, namespace, group, instance)
        self._cond = threading.Condition()
        self._state: dict[str, bool] = {}
        self._events: list[tuple[float, str, bool]] = []
        self._error: str | None = None
        self._stop = threading.Event()
        self._poll()  # the starting state, before anyone waits on it
        self._thread = threading.Thread(target=self._run, name="kalab-exporter-watch", daemon=True)
        self._thread.start()

    def _masters(self) -> dict[str, bool]:
        cluster, namespace, group, instance = self._args
        pods = keepalived_pods(cluster, namespace, group)
        holds: dict[str, bool] = dict.fromkeys(self._state, False)  # a node whose pod is gone holds nothing
        for row in pods[pods["phase"] == "Running"].itertuples():
            try:
                states = states_from_frame(scrape(cluster, str(row.pod), namespace))
            except KalabError:
                holds[str(row.node)] = False  # a pod starting or stopping: its exporter is not answering yet
                continue
            mine = states[states["instance"] == instance]
            holds[str(row.node)] = bool((mine["state"] == "MASTER").any())
        return holds

    def _poll(self) -> None:
        holds = self._masters()
        now = time.time()
        with self._cond:
            for node, held in holds.items():
                if self._state.get(node) != held:
                    self._state[node] = held
                    self._events.append((now, node, held))
            self._cond.notify_all()

    def _run(self) -> None:
        while not self._stop.wait(POLL_INTERVAL):
            try:
                self._poll()
            except KalabError as err:  # the API itself failed: say so to whoever waits
                with self._cond:
                    self._error = str(err)
                    self._cond.notify_all()

    def holders(self) -> list[str]:
        with self._cond:
            return sorted(n for n, held in self._state.items() if held)

    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float, what: str) -> list[str]:
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                holders = sorted(n for n, held in self._state.items() if held)
                if predicate(holders):
                    return holders
                left = deadline - time.monotonic()
                if self._error is not None or left <= 0:
                    now = ", ".join(holders) or "no node"
                    why = f" ({self._error.rstrip('.')})" if self._error else ""
                    raise KalabError(f"Timed out after {timeout:g} s waiting for {what}; {now} holds the VIP{why}.")
                self._cond.wait(min(left, 0.5))

    def events(self) -> pd.DataFrame:
        with self._cond:
            return pd.DataFrame(self._events, columns=["t", "node", "holds"])

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def __enter__(self) -> ExporterWatch:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class ApiTarget:
    """Implements kalab.cluster.failover.FailoverTarget for a LoadBalancer service on any cluster."""

    def __init__(
        self, cluster: Cluster, namespace: str = "demo", service: str = "demo", clients: ClientPlace = THIS_MACHINE
    ):
        self.cluster = cluster
        self.instance = f"{namespace}/{service}"
        self.clients = clients
        try:
            found = cluster.core.read_namespaced_service(service, namespace)
            svc = as_dict(cluster.api.sanitize_for_serialization(found))  # type: ignore[no-untyped-call]
        except ApiException as err:
            raise fail(f"Reading service {self.instance}", err, "deploy the demo first (notebook 03)") from None
        carried = carried_service(svc)
        self.vip, self.group_ns, self.group = carried.vip, carried.group_namespace, carried.group
        self.url = f"http://{self.vip}/"
        try:
            raw = cluster.custom.get_namespaced_custom_object(GROUP, VERSION, self.group_ns, PLURAL, self.group)
        except ApiException as err:
            raise fail(
                f"Reading KeepalivedGroup {self.group_ns}/{self.group}", err, "create it (notebook 01)"
            ) from None
        self.advert_int, self.vrrp_version = vrrp_timing(svc, as_dict(raw))
        self._stopped: dict[str, str] = {}  # node → the pod we deleted there

    @property
    def failure_kinds(self) -> tuple[FailureKind, ...]:
        return (FailureKind.GRACEFUL,)

    def watch_vip(self) -> ExporterWatch:
        return ExporterWatch(self.cluster, self.group_ns, self.group, self.instance)

    def wait_for_single_master(self, timeout: float | None = None) -> str:
        limit = timeout if timeout is not None else 3 * master_down_interval(self.advert_int) + 10.0
        with self.watch_vip() as watch:
            return watch.wait_for(lambda h: len(h) == 1, limit, "exactly one node to be MASTER")[0]

    def _pod_on(self, node: str) -> str | None:
        pods = keepalived_pods(self.cluster, self.group_ns, self.group)
        ready = pods[(pods["node"] == node) & (pods["phase"] == "Running") & pods["ready"].astype(bool)]
        return str(ready["pod"].iloc[0]) if len(ready) else None

    def keepalived_running(self, node: str) -> bool:
        pod = self._pod_on(node)
        return pod is not None and pod != self._stopped.get(node)

    def stop_keepalived(self, node: str, sig: int) -> None:
        if sig != signal.SIGTERM:
            raise KalabError("Through the API keepalived can only be stopped gracefully (its pod deleted).")
        pod = self._pod_on(node)
        if pod is None:
            raise KalabError(f"No Ready keepalived pod runs on {node}; wait for the DaemonSet to roll it out.")
        try:
            self.cluster.core.delete_namespaced_pod(pod, self.group_ns)
        except ApiException as err:
            raise fail(f"Deleting keepalived pod {self.group_ns}/{pod}", err, "check you may delete pods") from None
        self._stopped[node] = pod

    def start_keepalived(self, node: str, timeout: float = 120.0) -> None:
        """The DaemonSet replaces the deleted pod; wait until the new one is Ready."""
        deadline = time.monotonic() + timeout
        while not self.keepalived_running(node):
            if time.monotonic() > deadline:
                raise KalabError(
                    f"The DaemonSet did not bring keepalived back on {node} within {timeout:g} s; "
                    "check its events (`oc describe ds -n keepalived-operator`)."
                )
            time.sleep(0.1)
        self._stopped.pop(node, None)

    def set_link(self, node: str, up: bool) -> None:
        raise KalabError(f"A link-down failure needs access to {node} itself; run that experiment in the lab.")
