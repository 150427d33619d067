"""A scratch namespace of its own where symptoms are reproduced safely, and removed again."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import Progress, api_message, fail, poll, report
from kalab.cluster.connect import Cluster
from kalab.cluster.demo import service_vip
from kalab.cluster.diagnose.external_ip import ServiceAttempt
from kalab.model import manifests, operator
from kalab.model.errors import KalabError

SCRATCH_NAMESPACE = "kalab-troubleshoot"
SCRATCH_VALUE = "kalab-troubleshooting"
SCRATCH_LABEL = "app.kubernetes.io/managed-by"


def _read_namespace(cluster: Cluster, namespace: str) -> Any:
    try:
        return cluster.core.read_namespace(namespace)
    except ApiException as err:
        if err.status == 404:
            return None
        raise fail(f"Reading namespace {namespace}", err, "check your access") from None


def _check_scratch(found: Any, namespace: str) -> None:
    labels = (found.metadata.labels if found.metadata else None) or {}
    if labels.get(SCRATCH_LABEL) != SCRATCH_VALUE:
        raise KalabError(
            f"Namespace {namespace} exists without the {SCRATCH_LABEL}={SCRATCH_VALUE} label, so it is not a scratch "
            "namespace of ours and is left alone; pick another scratch namespace name."
        )


def namespace_phase(cluster: Cluster, namespace: str) -> str | None:
    """The namespace's phase (Active, Terminating), or None when it does not exist."""
    found = _read_namespace(cluster, namespace)
    if found is None:
        return None
    return str((found.status.phase if found.status else None) or "Active")


def delete_scratch_namespace(
    cluster: Cluster, namespace: str = SCRATCH_NAMESPACE, timeout: float = 60, progress: Progress = None
) -> None:
    """Delete a scratch namespace (only one carrying our label) and wait until the server has removed it."""
    found = _read_namespace(cluster, namespace)
    if found is None:
        report(progress, f"namespace {namespace} is already gone")
        return
    _check_scratch(found, namespace)
    try:
        cluster.core.delete_namespace(namespace)
    except ApiException as err:
        if err.status != 404:
            raise fail(f"Deleting namespace {namespace}", err, f"delete it with `oc delete ns {namespace}`") from None
    report(progress, f"deleting namespace {namespace} (it is Terminating until its content is gone)")

    def timed_out() -> KalabError:
        phase = namespace_phase(cluster, namespace) or "there"
        return KalabError(
            f"Namespace {namespace} is still {phase} after {timeout:g} s; see what holds it with "
            f"`oc get ns {namespace} -o yaml`."
        )

    poll(lambda: namespace_phase(cluster, namespace) is None, timeout, timed_out, interval=0.25)
    report(progress, f"namespace {namespace} is gone")


def create_scratch_namespace(
    cluster: Cluster, namespace: str = SCRATCH_NAMESPACE, timeout: float = 60, progress: Progress = None
) -> str:
    """A fresh namespace for reproducing symptoms, labelled as ours; a leftover from an interrupted run goes first."""
    manifests.dns1123_label(namespace, "The scratch namespace")
    if _read_namespace(cluster, namespace) is not None:
        delete_scratch_namespace(cluster, namespace, timeout, progress)
    meta = client.V1ObjectMeta(name=namespace, labels={SCRATCH_LABEL: SCRATCH_VALUE})
    try:
        cluster.core.create_namespace(client.V1Namespace(metadata=meta))
    except ApiException as err:
        raise fail(f"Creating namespace {namespace}", err, "use a kubeconfig that may create namespaces") from None
    report(progress, f"created namespace {namespace}")
    return namespace


def scratch_service(
    namespace: str, name: str, group: str | None = None, external_ips: Sequence[str] = (), kind: str = "LoadBalancer"
) -> dict[str, Any]:
    """A service on port 80 whose selector matches no pod; annotated for `group` (<ns>/<name>) when given."""
    manifests.dns1123_label(name, "The scratch service name")
    meta: dict[str, Any] = {"name": name, "namespace": namespace, "labels": {SCRATCH_LABEL: SCRATCH_VALUE}}
    if group is not None:
        meta["annotations"] = {operator.GROUP_ANNOTATION: group}
    spec: dict[str, Any] = {
        "type": kind,
        "selector": {"kalab-scratch": name},
        "ports": [{"name": "http", "protocol": "TCP", "port": 80, "targetPort": 80}],
    }
    if external_ips:
        spec["externalIPs"] = list(external_ips)
    return {"apiVersion": "v1", "kind": "Service", "metadata": meta, "spec": spec}


def create_scratch_service(
    cluster: Cluster,
    namespace: str,
    name: str,
    group: str | None = None,
    external_ips: Sequence[str] = (),
    kind: str = "LoadBalancer",
    timeout: float = 30,
    progress: Progress = None,
) -> ServiceAttempt:
    """Ask the API server for a service in a scratch namespace; a refusal (with the server's words) is a result.

    The namespace must be one create_scratch_namespace made. An admitted LoadBalancer service is waited for until
    it has its EXTERNAL-IP (for up to `timeout` s; 0 returns at once).
    """
    found = _read_namespace(cluster, namespace)
    if found is None:
        raise KalabError(f"There is no namespace {namespace}; create it first with create_scratch_namespace.")
    _check_scratch(found, namespace)
    body = client.V1Service.from_dict(scratch_service(namespace, name, group, external_ips, kind))
    assert body is not None
    ips = tuple(str(ip) for ip in external_ips)
    try:
        cluster.core.create_namespaced_service(namespace, body)
    except ApiException as err:
        if err.status in (403, 422):  # admission: OpenShift answers Forbidden, validation Invalid
            report(progress, f"the API server refused service {namespace}/{name}")
            return ServiceAttempt(namespace, name, False, api_message(err), ips)
        if err.status != 409:
            raise fail(f"Creating service {namespace}/{name}", err, "check the namespace and your access") from None
        report(progress, f"service {namespace}/{name} already exists")
    else:
        report(progress, f"the API server admitted service {namespace}/{name}")
    if kind == "LoadBalancer" and timeout > 0:
        service_vip(cluster, namespace, name, timeout=timeout, progress=progress)
    return ServiceAttempt(namespace, name, True, "", ips)
