"""The seed's demo: two php pods pinned to nodes and a LoadBalancer service the KeepalivedGroup serves."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import pandas as pd
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import Progress, as_dict, fail, poll, report
from kalab.cluster.connect import Cluster
from kalab.cluster.nodes import _check_nodes
from kalab.model import manifests, objects
from kalab.model.errors import KalabError

DEFAULT_GROUP = "keepalived-operator/keepalivedgroup-workers"
HOSTNAME_LABEL = "kubernetes.io/hostname"
SPEC_GRACE = 5.0  # s: how long service_vip waits for spec.externalIPs once the status has the address
SPEC_POLL = 0.2  # s: poll's interval


def _create(cluster: Cluster, obj: dict[str, Any], progress: Progress) -> None:
    kind, name, ns = obj["kind"], objects.name_of(obj), obj["metadata"].get("namespace")
    try:
        if kind == "Namespace":
            cluster.core.create_namespace(_model(client.V1Namespace, obj))
        elif kind == "Pod":
            cluster.core.create_namespaced_pod(ns, _model(client.V1Pod, obj))
        else:
            cluster.core.create_namespaced_service(ns, _model(client.V1Service, obj))
        report(progress, f"created {kind} {name}")
    except ApiException as err:
        if err.status != 409:
            raise fail(f"Creating {kind} {name}", err, "check the namespace and your access") from None
        report(progress, f"{kind} {name} already exists")


def _model(cls: Any, obj: dict[str, Any]) -> Any:
    made = cls.from_dict(obj)
    assert made is not None
    return made


def demo_pods(cluster: Cluster, namespace: str = "demo") -> pd.DataFrame:
    """The demo pods: pod, node, pod_ip, phase."""
    try:
        items = cluster.core.list_namespaced_pod(namespace, label_selector="env=test").items
    except ApiException as err:
        raise fail(f"Listing pods in {namespace}", err, "check the namespace exists") from None
    rows = [
        {
            "pod": p.metadata.name if p.metadata else None,
            "node": p.spec.node_name if p.spec else None,
            "pod_ip": p.status.pod_ip if p.status else None,
            "phase": p.status.phase if p.status else None,
        }
        for p in items
    ]
    return pd.DataFrame(rows, columns=["pod", "node", "pod_ip", "phase"])


def deploy_demo(
    cluster: Cluster,
    namespace: str = "demo",
    nodes: Sequence[str] = ("master-0", "master-2"),
    group: str = DEFAULT_GROUP,
    timeout: float = 120,
    progress: Progress = None,
    **demo_kwargs: str,
) -> pd.DataFrame:
    """Create the namespace (if missing), the pods and the service (each if missing); wait until the pods run.

    The demo follows `nodes`: a pod pinned elsewhere is moved (deleted and created again on its node, as a bare
    pod's nodeSelector cannot change), and pods beyond one per node are deleted.
    """
    objs = manifests.demo(namespace, nodes, group=group, **demo_kwargs)
    _check_nodes(cluster, nodes)
    _create(cluster, {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": namespace}}, progress)
    wanted = {objects.name_of(o): o["spec"]["nodeSelector"][HOSTNAME_LABEL] for o in objs if o["kind"] == "Pod"}
    _remove_misplaced(cluster, namespace, wanted, timeout, progress)
    for obj in objs:
        _create(cluster, obj, progress)
    names = {objects.name_of(o) for o in objs if o["kind"] == "Pod"}
    seen: list[str] = [""]

    def running() -> pd.DataFrame | None:
        pods = demo_pods(cluster, namespace)
        pods = pods[pods["pod"].isin(names)]
        summary = ", ".join(f"{p}: {ph}" for p, ph in zip(pods["pod"], pods["phase"], strict=True))
        if summary != seen[0]:
            seen[0] = summary
            report(progress, summary)
        return pods if len(pods) == len(names) and (pods["phase"] == "Running").all() else None

    def timed_out() -> KalabError:
        return KalabError(
            f"The demo pods are not all Running after {timeout:g} s ({seen[0] or 'none found'}); "
            f"see `oc describe pods -n {namespace}`."
        )

    result: pd.DataFrame = poll(running, timeout, timed_out)
    return result.reset_index(drop=True)


def pinned_nodes(cluster: Cluster, namespace: str = "demo") -> dict[str, str | None]:
    """Each demo pod's pinned node (its nodeSelector's hostname), which is where it runs once scheduled."""
    try:
        items = cluster.core.list_namespaced_pod(namespace, label_selector="env=test").items
    except ApiException as err:
        if err.status == 404:
            return {}
        raise fail(f"Listing pods in {namespace}", err, "check your access") from None
    return {
        p.metadata.name: ((p.spec.node_selector or {}).get(HOSTNAME_LABEL) if p.spec else None)
        for p in items
        if p.metadata and p.metadata.name
    }


def _remove_misplaced(
    cluster: Cluster, namespace: str, wanted: dict[str, str], timeout: float, progress: Progress
) -> None:
    """Delete demo pods pinned to a node no longer chosen (or beyond one per node), and wait until they are gone."""
    gone = []
    for pod, node in pinned_nodes(cluster, namespace).items():
        if wanted.get(pod) == node:
            continue
        try:
            cluster.core.delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
        except ApiException as err:
            if err.status != 404:
                raise fail(f"Deleting pod {pod}", err, "check your access") from None
        target = f"to move it from {node} to {wanted[pod]}" if pod in wanted else f"(no pod is wanted on {node} now)"
        report(progress, f"deleted Pod {pod} {target}")
        gone.append(pod)
    if gone:
        poll(
            lambda: not set(gone) & set(pinned_nodes(cluster, namespace)),
            timeout,
            lambda: KalabError(
                f"Pods {', '.join(gone)} were deleted but are still there after {timeout:g} s; "
                f"see `oc get pods -n {namespace}`."
            ),
        )


def cleanup_demo(
    cluster: Cluster,
    namespace: str = "demo",
    nodes: Sequence[str] = ("master-0", "master-2"),
    group: str = DEFAULT_GROUP,
    timeout: float = 60,
    delete_namespace: bool = False,
    progress: Progress = None,
    **demo_kwargs: str,
) -> None:
    """The seed's "to restore" (`oc delete -n demo -f demo.yaml`), waiting until the objects are gone."""
    objs = manifests.demo(namespace, nodes, group=group, **demo_kwargs)
    # Also the pods of an earlier, larger choice of nodes (test-2, …): every pod the demo's service selects.
    named = {objects.name_of(o) for o in objs if o["kind"] == "Pod"}
    extra: list[dict[str, Any]] = [
        {"kind": "Pod", "metadata": {"name": pod, "namespace": namespace}}
        for pod in pinned_nodes(cluster, namespace)
        if pod not in named
    ]
    objs = [*extra, *objs]
    for obj in objs:
        kind, name = obj["kind"], objects.name_of(obj)
        try:
            if kind == "Pod":
                cluster.core.delete_namespaced_pod(name, namespace)
            else:
                cluster.core.delete_namespaced_service(name, namespace)
            report(progress, f"deleted {kind} {name}")
        except ApiException as err:
            if err.status != 404:
                raise fail(f"Deleting {kind} {name}", err, "check your access") from None
    if delete_namespace:
        try:
            cluster.core.delete_namespace(namespace)
        except ApiException as err:
            if err.status != 404:
                raise fail(f"Deleting namespace {namespace}", err, "check your access") from None

    def gone() -> bool:
        left = [o for o in objs if _exists(cluster, o)]
        if delete_namespace:
            left += (
                [{"kind": "Namespace", "metadata": {"name": namespace}}]
                if _namespace_exists(cluster, namespace)
                else []
            )
        return not left

    poll(
        gone,
        timeout,
        lambda: KalabError(
            f"The demo objects in {namespace} are still there after {timeout:g} s; see `oc get all -n {namespace}`."
        ),
    )
    report(progress, "demo removed")


def _exists(cluster: Cluster, obj: dict[str, Any]) -> bool:
    kind, name, ns = obj["kind"], objects.name_of(obj), objects.namespace_of(obj)
    try:
        if kind == "Pod":
            cluster.core.read_namespaced_pod(name, ns)
        else:
            cluster.core.read_namespaced_service(name, ns)
    except ApiException as err:
        if err.status == 404:
            return False
        raise fail(f"Reading {kind} {name}", err, "check your access") from None
    return True


def _namespace_exists(cluster: Cluster, namespace: str) -> bool:
    try:
        cluster.core.read_namespace(namespace)
    except ApiException as err:
        if err.status == 404:
            return False
        raise fail(f"Reading namespace {namespace}", err, "check your access") from None
    return True


def service_vip(
    cluster: Cluster, namespace: str = "demo", name: str = "demo", timeout: float = 60, progress: Progress = None
) -> str:
    """The service's EXTERNAL-IP once assigned (status.loadBalancer.ingress, else spec.externalIPs).

    OpenShift's ingress IP controller writes the address to the status and to spec.externalIPs in two writes, so
    once the status has it this waits a little (SPEC_GRACE s) for the spec too: what `oc get svc` shows next is then
    the whole assignment. Clusters whose load balancers never write the spec just return after that grace."""
    first_seen: list[float] = []
    give_up = time.monotonic() + timeout - 2 * SPEC_POLL  # the grace never turns an assigned address into a timeout

    def vip() -> str | None:
        try:
            svc = cluster.core.read_namespaced_service(name, namespace)
        except ApiException as err:
            if err.status == 404:
                raise KalabError(
                    f"There is no service {namespace}/{name}; deploy the demo first (notebook 03)."
                ) from None
            raise fail(f"Reading service {namespace}/{name}", err, "check your access") from None
        ingress = (svc.status.load_balancer.ingress if svc.status and svc.status.load_balancer else None) or []
        external = list((svc.spec.external_ips if svc.spec else None) or [])
        ips = [i.ip for i in ingress if i.ip] or external
        if not ips:
            return None
        if ips[0] not in external:
            first_seen[:1] = first_seen[:1] or [time.monotonic()]
            now = time.monotonic()
            if now - first_seen[0] < SPEC_GRACE and now < give_up:
                return None
        return ips[0]

    report(progress, f"waiting for the EXTERNAL-IP of {namespace}/{name}")
    found: str = poll(
        vip,
        timeout,
        lambda: KalabError(
            f"EXTERNAL-IP pending for {namespace}/{name} after {timeout:g} s: patch the externalIP CIDRs (notebook 02)."
        ),
    )
    report(progress, f"EXTERNAL-IP {found}")
    return found


def service_table(cluster: Cluster, namespace: str = "demo", name: str = "demo") -> pd.DataFrame:
    """The service as `oc get svc` shows it: EXTERNAL-IP joins ingress and spec.externalIPs (hence twice)."""
    try:
        found = cluster.core.read_namespaced_service(name, namespace)
        svc = as_dict(cluster.api.sanitize_for_serialization(found))  # type: ignore[no-untyped-call]
    except ApiException as err:
        raise fail(f"Reading service {namespace}/{name}", err, "deploy the demo first (notebook 03)") from None
    spec, status = objects.spec(svc), objects.status(svc)
    ingress = [i["ip"] for i in (status.get("loadBalancer") or {}).get("ingress") or [] if i.get("ip")]
    external = ",".join(ingress + list(spec.get("externalIPs") or []))
    ports = ",".join(
        f"{p['port']}:{p['nodePort']}/{p['protocol']}" if p.get("nodePort") else f"{p['port']}/{p['protocol']}"
        for p in spec.get("ports") or []
    )
    row = {
        "NAME": name,
        "TYPE": spec.get("type"),
        "CLUSTER-IP": spec.get("clusterIP"),
        "EXTERNAL-IP": external or ("<pending>" if spec.get("type") == "LoadBalancer" else "<none>"),
        "PORT(S)": ports,
    }
    return pd.DataFrame([row]).set_index("NAME")
