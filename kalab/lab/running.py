"""A running lab as a failover target: its demo VIP, the keepalived pods behind it, their processes and links.

`kalab failover` uses this when `kalab lab up` is running and the demo is deployed. Everything is found from
outside the lab's tree: objects through the lab's API, processes through the PID records its supervisor keeps (so a
failure is injected only into a process the lab started, verified by start time, its PID translated from the
lab's PID namespace), links and addresses by entering the lab's nodes (dataplane/entry.py).
Unlike the throwaway scenario, the lab's kubelet restarts a stopped keepalived by itself, as a cluster would.
"""

from __future__ import annotations

import json
import os
import signal
import time
from typing import Any

from kubernetes import client, config

from kalab.lab.bastion import BastionClients
from kalab.lab.control import LabInfo
from kalab.lab.dataplane import naming, procfs
from kalab.lab.dataplane.entry import Entry
from kalab.lab.dataplane.records import read_records
from kalab.lab.dataplane.topology import Topology, TopologySpec
from kalab.lab.dataplane.vipwatch import VipWatcher
from kalab.model import objects
from kalab.model.errors import KalabError
from kalab.model.operator import carried_service, vrrp_timing
from kalab.model.vrrp import master_down_interval


class RunningLab(BastionClients):
    """Implements kalab.cluster.failover.FailoverTarget for the demo service of a lab started by `kalab lab up`."""

    def __init__(self, info: LabInfo, namespace: str = "demo", service: str = "demo") -> None:
        self.info = info
        self._entry = info.entry()
        self.api = config.new_client_from_config(str(info.kubeconfig))  # type: ignore[no-untyped-call]
        svc = self._get(f"/api/v1/namespaces/{namespace}/services/{service}", f"service {namespace}/{service}")
        carried = carried_service(svc)
        self.vip, self.group_ns, self.group = carried.vip, carried.group_namespace, carried.group
        self.url = f"http://{self.vip}/"
        group = self._get(
            f"/apis/redhatcop.redhat.io/v1alpha1/namespaces/{self.group_ns}/keepalivedgroups/{self.group}",
            f"KeepalivedGroup {self.group_ns}/{self.group}",
        )
        spec = objects.spec(group)
        self.advert_int, self.vrrp_version = vrrp_timing(svc, group)
        self.interface = str(spec.get("interface") or naming.POD_INTERFACE)
        pods = self._get(
            f"/api/v1/namespaces/{self.group_ns}/pods?labelSelector=keepalivedGroup%3D{self.group}", "keepalived pods"
        )
        self.pods = {
            p["spec"]["nodeName"]: objects.name_of(p) for p in pods.get("items", []) if p["spec"].get("nodeName")
        }
        if len(self.pods) < 2:
            raise KalabError(f"Only {len(self.pods)} keepalived pod(s) run for {self.group}; label two nodes.")
        self.topology = Topology(TopologySpec.seed(), entry=self._entry)

    def _get(self, path: str, what: str) -> dict[str, Any]:
        """One GET through the lab's API as plain JSON (the objects' camelCase, as on the wire)."""
        conf = self.api.configuration
        headers = {"Accept": "application/json", "Authorization": conf.get_api_key_with_prefix("BearerToken")}
        try:
            response = self.api.call_api("GET", conf.host + path, headers)
            data: dict[str, Any] = json.loads(response.read())
        except (client.ApiException, OSError, ValueError) as err:
            raise KalabError(f"The lab could not give {what} ({err}); is it up?") from None
        if response.status != 200:
            raise KalabError(f"The lab has no {what} ({data.get('message', response.status)}); deploy the demo first.")
        return data

    # -- FailoverTarget ------------------------------------------------------------------------------------

    @property
    def bastion_ns(self) -> str:
        return self.topology.bastion_ns

    @property
    def entry(self) -> Entry:
        return self._entry

    def watch_vip(self) -> VipWatcher:
        return VipWatcher({n: self.topology.node_ns(n) for n in self.pods}, self.interface, self.vip, self._entry)

    def wait_for_single_master(self, timeout: float | None = None) -> str:
        limit = timeout if timeout is not None else 3 * master_down_interval(self.advert_int) + 10.0
        with self.watch_vip() as watcher:
            return watcher.wait_for(lambda h: len(h) == 1, limit, "exactly one node to hold the VIP")[0]

    def _keepalived_pid(self, node: str) -> int | None:
        """keepalived's PID on `node` as this process numbers it, if the lab's record of it is still true."""
        name = f"{self.group_ns}/{self.pods[node]}/keepalived"
        for record in read_records(self.info.state_dir / "supervisor"):
            if record.name == name:
                pid = self._entry.host_pid(record.pid)
                if pid is not None and procfs.starttime(pid) == record.starttime:
                    return pid
        return None

    def keepalived_running(self, node: str) -> bool:
        return self._keepalived_pid(node) is not None

    def stop_keepalived(self, node: str, sig: int) -> None:
        pid = self._keepalived_pid(node)
        if pid is None:
            raise KalabError(f"keepalived is not running on {node}; wait for its pod to be Running.")
        # The recorded PID leads its own process group: a crash takes keepalived's VRRP child down with it.
        if sig == signal.SIGKILL:
            os.killpg(pid, sig)
        else:
            os.kill(pid, sig)

    def start_keepalived(self, node: str) -> None:
        """The kubelet restarts the container (restartPolicy Always); wait until it has."""
        deadline = time.monotonic() + 60
        while not self.keepalived_running(node):
            if time.monotonic() > deadline:
                raise KalabError(f"The kubelet did not restart keepalived on {node} within 60 s.")
            time.sleep(0.05)

    def set_link(self, node: str, up: bool) -> None:
        self.topology.set_uplink(node, up)
